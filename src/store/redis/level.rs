//! A stock level as a sku's levels hash stores it, "on hand,reserved,safety,sequence,pending"
//! (then ",reorder point" when the feed set one),
//! read strictly: a level in a form no script writes is reported, never computed with.

use std::collections::HashMap;

use crate::store::{MAX_STOCK_UNITS, StockLevel, StockUpdate, StoreError};

/// The rejection of a delta or shipment of a level that cannot be read.
pub(super) fn unreadable_level_update(u: &StockUpdate, stored: &str) -> String {
    format!(
        "the stock level of {} at {} cannot be read ({}); a snapshot of that node and sku repairs it",
        u.sku,
        u.node_id,
        crate::store::shown(stored)
    )
}

/// The error of a level that cannot be read.
pub(super) fn unreadable_level(sku: &str, node: &str, stored: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "the stock level of sku {sku:?} at node {} cannot be read ({}); a feed snapshot of that node and sku repairs it",
        crate::store::shown(node),
        crate::store::shown(stored)
    ))
}

/// One figure of a stored level: a decimal without leading zeros, up to `max`.
fn stored_figure(part: &str, max: u64) -> Option<u64> {
    if part.is_empty() || (part.len() > 1 && part.starts_with('0')) {
        return None;
    }
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse::<u64>().ok().filter(|n| *n <= max)
}

/// One level as stored: "on hand,reserved,safety,sequence,pending", and ",reorder point" when
/// the feed set one.
pub(super) fn parse_level(packed: &str) -> Option<StockLevel> {
    let parts: Vec<&str> = packed.split(',').collect();
    let (on_hand, reserved, safety, sequence, pending, reorder) = match parts[..] {
        [a, b, c, d, e] => (a, b, c, d, e, None),
        [a, b, c, d, e, f] => (a, b, c, d, e, Some(f)),
        _ => return None,
    };
    let reorder_point = match reorder {
        Some(part) => Some(stored_figure(part, MAX_STOCK_UNITS)?),
        None => None,
    };
    // the fifth part, units of attempts in flight, is counted in reserved already
    stored_figure(pending, MAX_STOCK_UNITS)?;
    Some(StockLevel {
        on_hand: stored_figure(on_hand, MAX_STOCK_UNITS)?,
        reserved: stored_figure(reserved, MAX_STOCK_UNITS)?,
        safety_stock: stored_figure(safety, MAX_STOCK_UNITS)?,
        last_sequence: stored_figure(sequence, u64::MAX)?,
        reorder_point,
    })
}

/// Levels from a sku's hash: node → "on hand,reserved,safety,sequence,pending".
pub(super) fn parse_levels(
    sku: &str,
    fields: &[(String, String)],
) -> Result<HashMap<String, StockLevel>, StoreError> {
    fields
        .iter()
        .map(|(node, packed)| match parse_level(packed) {
            Some(level) => Ok((node.clone(), level)),
            None => Err(unreadable_level(sku, node, packed)),
        })
        .collect()
}
