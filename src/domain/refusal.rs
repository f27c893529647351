//! Refusals: why a well-formed order gets no plan under its segment's rules, as data. The kind
//! says which rule refused and why, the shortages say by how much stock fell short, so that
//! what follows a refusal (counting it in a replay, rerouting, backordering) acts on the kind
//! and never on the wording of the sentence shown to people.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Node, Order, SegmentRules, StrategyKind};

/// Which rule refused an order, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RefusalKind {
    /// The customer picks up at a store the segment may not use (its kind, or its node lists,
    /// rule the store out).
    PickupStoreNotAllowed,
    /// The segment allows neither partial fulfilment nor backorders, and the nodes it may use
    /// hold less of some sku than the order asks ([`Refusal::shortages`] says which).
    NotEnoughStock,
    /// The segment allows neither partial fulfilment nor backorders; the nodes it may use hold
    /// enough in all, but no plan within its shipment limit, the nodes' capacity and the
    /// order's kits covers the order.
    StockTooSpread,
    /// The order is ship-complete (one shipment with everything, or none) and the nodes the
    /// segment may use hold less of some sku than it asks.
    ShipCompleteNotEnoughStock,
    /// The order is ship-complete; the nodes the segment may use hold enough in all, but no
    /// one of them holds all of it with the capacity left to ship it.
    ShipCompleteTooSpread,
    /// The segment allows neither partial fulfilment nor backorders; the nodes it may use hold
    /// enough in all, and the strategy found no plan within its shipment limit, the nodes'
    /// capacity and the order's kits. Unlike [`RefusalKind::StockTooSpread`] this says nothing
    /// of whether such a plan exists: a rule-list strategy (`nearest`, `priority`) tries nodes
    /// in its order and not every plan, and `optimal` says so when its solve budget ran out
    /// before it proved there is none.
    NoPlanFound(StrategyKind),
}

impl RefusalKind {
    /// Whether the order was refused as ship-complete.
    pub fn ship_complete(&self) -> bool {
        matches!(
            self,
            RefusalKind::ShipCompleteNotEnoughStock | RefusalKind::ShipCompleteTooSpread
        )
    }
}

/// A sku the nodes a segment may use hold too little of for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    pub sku: String,
    /// Units the order asks for, over all its lines.
    pub wanted: u64,
    /// Units available to the segment across the nodes it may use.
    pub available: u64,
}

impl Shortage {
    /// Units no node the segment may use can give.
    pub fn missing(&self) -> u64 {
        self.wanted.saturating_sub(self.available)
    }
}

/// A pickup store an order names that its segment may not use, and the rule that says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExcludedStore {
    pub node_id: String,
    /// The segment's rule, in words (`kind store not allowed for segment vip`).
    pub rule: String,
}

/// Why an order gets no plan: its kind, the facts behind it, and (as its `Display`) the
/// sentence a caller is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub order_id: String,
    pub segment: String,
    /// The skus short of stock, in the order's sku order; empty unless the kind is one of not
    /// enough stock.
    pub shortages: Vec<Shortage>,
    /// The most shipments a plan could use: one for a ship-complete order, else the segment's
    /// limit.
    pub max_shipments: u32,
    /// The pickup store refused, for [`RefusalKind::PickupStoreNotAllowed`] only.
    pub pickup_store: Option<ExcludedStore>,
}

impl Refusal {
    /// `segment` may not use `store`, the order's pickup store, by the rule `rule`.
    pub fn pickup_store(order: &Order, segment: &SegmentRules, store: &Node, rule: String) -> Self {
        Self {
            kind: RefusalKind::PickupStoreNotAllowed,
            order_id: order.order_id.clone(),
            segment: segment.name.clone(),
            shortages: Vec::new(),
            max_shipments: Self::shipments_allowed(order, segment),
            pickup_store: Some(ExcludedStore {
                node_id: store.id.clone(),
                rule,
            }),
        }
    }

    /// No plan fills the whole order, which `segment` requires: short of the `shortages`, or
    /// (with none) too spread for the shipments, capacity and kits it allows. `unproven` names
    /// the strategy when its search did not cover every plan (a rule-list strategy, or a solve
    /// whose budget ran out): with no shortage, the refusal is then the strategy's, not the
    /// stock's. A ship-complete order is looked at node by node, whatever the strategy.
    pub fn unfillable(
        order: &Order,
        segment: &SegmentRules,
        shortages: Vec<Shortage>,
        unproven: Option<StrategyKind>,
    ) -> Self {
        let kind = match (order.ship_complete, shortages.is_empty(), unproven) {
            (true, false, _) => RefusalKind::ShipCompleteNotEnoughStock,
            (true, true, _) => RefusalKind::ShipCompleteTooSpread,
            (false, false, _) => RefusalKind::NotEnoughStock,
            (false, true, Some(strategy)) => RefusalKind::NoPlanFound(strategy),
            (false, true, None) => RefusalKind::StockTooSpread,
        };
        Self {
            kind,
            order_id: order.order_id.clone(),
            segment: segment.name.clone(),
            shortages,
            max_shipments: Self::shipments_allowed(order, segment),
            pickup_store: None,
        }
    }

    fn shipments_allowed(order: &Order, segment: &SegmentRules) -> u32 {
        if order.ship_complete {
            1
        } else {
            segment.max_shipments
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(store) = &self.pickup_store {
            return write!(
                f,
                "segment {} may not use pickup store {}: {}",
                self.segment, store.node_id, store.rule
            );
        }
        write!(
            f,
            "no plan sources order {} under its rules (",
            self.order_id
        )?;
        match self.kind {
            RefusalKind::NoPlanFound(strategy) => write!(
                f,
                "the stock exists, but strategy {strategy} found no plan of at most {} shipment(s) within node capacity and kits that covers it{}",
                self.max_shipments,
                if strategy == StrategyKind::Optimal {
                    " before its solve budget ran out"
                } else {
                    "; it tries nodes in its order, not every plan"
                }
            )?,
            _ if self.shortages.is_empty() => write!(
                f,
                "the stock exists, but no plan of at most {} shipment(s) within node capacity and kits covers it",
                self.max_shipments
            )?,
            _ => {}
        }
        for (i, s) in self.shortages.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{} wants {}, {} available to segment {}",
                s.sku, s.wanted, s.available, self.segment
            )?;
        }
        if self.kind.ship_complete() {
            f.write_str("): the order is ship-complete: one shipment with everything, or none")
        } else {
            write!(
                f,
                "): segment {} does not allow partial fulfilment or backorders",
                self.segment
            )
        }
    }
}
