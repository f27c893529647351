//! A day's node capacity as Redis keeps it: per order, the units taken per line and node, so
//! that a release gives back those of the lines it names, each line once, keeping the units
//! shipped; and what settling a due attempt gives back of it.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::record::Gives;
use crate::store::Allocation;

pub(super) const MILLIS_PER_DAY: i64 = 86_400_000;

/// An order's capacity as a day's by-order hash keeps it: the token and per line and node
/// `[node, units, line]`, with a fourth element `1` once the line was given back (what is left
/// is what it keeps); `[node, units]` for an entry written before capacity was kept per line.
#[derive(Debug, Default, Deserialize)]
pub(super) struct StoredCapacity {
    pub(super) t: String,
    pub(super) n: Vec<serde_json::Value>,
}

/// An order's capacity as the day's by-order hash keeps it: units per (node, line).
pub(super) fn capacity_entries(allocations: &[Allocation]) -> BTreeMap<(&str, &str), u64> {
    let mut entries: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for a in allocations {
        let units = entries.entry((&a.node_id, &a.line_id)).or_default();
        *units = units.saturating_add(a.quantity);
    }
    entries
}

/// Units of capacity each of the named lines (all if none are named) keeps at each of its
/// nodes once given back, by (line, node): its shipped units (the node did that work).
pub(super) fn capacity_kept(
    allocations: &[Allocation],
    line_ids: &[String],
) -> BTreeMap<(String, String), u64> {
    let mut kept: BTreeMap<(String, String), u64> = BTreeMap::new();
    for a in allocations {
        if line_ids.is_empty() || line_ids.contains(&a.line_id) {
            let total = kept
                .entry((a.line_id.clone(), a.node_id.clone()))
                .or_default();
            *total = total.saturating_add(a.shipped.min(a.quantity));
        }
    }
    kept
}

/// Units of capacity per node that `capacity_give.lua` gives back of this entry for what a
/// due attempt gives: the same decisions, made on what is read.
pub(super) fn capacity_given(
    entry: &StoredCapacity,
    gives: &Gives,
    allocations: &[Allocation],
) -> BTreeMap<String, u64> {
    let mut given: BTreeMap<String, u64> = BTreeMap::new();
    let lines = match gives {
        Gives::All => None,
        Gives::Lines(lines) => Some(lines),
    };
    let whole = lines.is_none_or(|lines| allocations.iter().all(|a| lines.contains(&a.line_id)));
    let kept = capacity_kept(allocations, lines.map(Vec::as_slice).unwrap_or(&[]));
    for e in &entry.n {
        let (Some(node), Some(units)) = (
            e.get(0).and_then(|v| v.as_str()),
            e.get(1).and_then(|v| v.as_u64()),
        ) else {
            continue;
        };
        let line = e.get(2).and_then(|v| v.as_str());
        let keep = match (lines, line) {
            (None, _) => 0,
            (Some(lines), Some(line)) => {
                if e.get(3).and_then(|v| v.as_u64()) == Some(1) || !lines.iter().any(|l| l == line)
                {
                    continue;
                }
                kept.get(&(line.to_owned(), node.to_owned()))
                    .copied()
                    .unwrap_or(0)
            }
            (Some(_), None) if whole => kept
                .iter()
                .filter(|((_, n), _)| n == node)
                .map(|(_, k)| *k)
                .fold(0, u64::saturating_add),
            (Some(_), None) => continue,
        };
        let total = given.entry(node.to_owned()).or_default();
        *total = total.saturating_add(units.saturating_sub(keep));
    }
    given
}
