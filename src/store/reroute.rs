//! After the first decision: a node that cannot ship what it was given, and what became of
//! those units. A reservation keeps every later decision in its history.

use serde::{Deserialize, Serialize};

use super::{Allocation, Protection};
use crate::clock::Millis;
use crate::domain::{Plan, StrategyKind};

/// Why a node cannot ship units it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RerouteReason {
    /// Picking found fewer units than the node's stock said.
    ShortPick,
    Damaged,
    /// The node cannot ship at all (closed, down, overloaded).
    NodeUnavailable,
    /// A store turned the order down.
    StoreRejected,
    Other,
}

impl RerouteReason {
    /// Whether the units do not exist: they leave the node's on hand with the allocation. The
    /// others go back to the node's stock.
    pub fn removes_stock(self) -> bool {
        matches!(self, RerouteReason::ShortPick | RerouteReason::Damaged)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RerouteReason::ShortPick => "short_pick",
            RerouteReason::Damaged => "damaged",
            RerouteReason::NodeUnavailable => "node_unavailable",
            RerouteReason::StoreRejected => "store_rejected",
            RerouteReason::Other => "other",
        }
    }
}

/// What became of units a node could not ship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "fate")]
pub enum Fate {
    /// Held (or allocated, for a committed order) at another node.
    Rerouted { node_id: String },
    /// No node can ship them now; they wait for supply (`unfilled = "backorder"`).
    Waiting,
    /// No node can ship them now, and the segment lets them go (`partial`, `reject`), or they
    /// waited longer than the segment's `backorder_max_days`: the order keeps its other units
    /// and these are dropped from it.
    Cancelled,
    /// Units that waited, now held (or allocated, for a committed order) at a node.
    Filled { node_id: String },
}

/// Units of one line and what became of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitFate {
    pub line_id: String,
    pub sku: String,
    pub units: u64,
    #[serde(flatten)]
    pub fate: Fate,
}

/// Units of a line that no node could ship, waiting for supply since `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingUnits {
    pub line_id: String,
    pub sku: String,
    pub units: u64,
    pub since: Millis,
}

impl WaitingUnits {
    /// The units a plan left unfilled, waiting from `since`.
    pub fn of_plan(plan: &Plan, since: Millis) -> Vec<WaitingUnits> {
        plan.unfilled
            .iter()
            .filter(|u| u.quantity > 0)
            .map(|u| WaitingUnits {
                line_id: u.line_id.clone(),
                sku: u.sku.clone(),
                units: u.quantity,
                since,
            })
            .collect()
    }
}

/// What a decision after the first did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// A node could not ship units; they were planned again.
    #[default]
    Reroute,
    /// Supply arrived for units waiting; some or all of them are held now.
    Fill,
    /// Units waited longer than the segment's `backorder_max_days` and were cancelled.
    Expire,
}

impl DecisionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Reroute => "reroute",
            DecisionKind::Fill => "fill",
            DecisionKind::Expire => "expire",
        }
    }
}

/// A line of an order waiting for supply, as the store's index of waiting units lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingEntry {
    pub order_id: String,
    pub line_id: String,
    pub sku: String,
    pub segment: String,
    pub units: u64,
    /// When the line's oldest waiting units started waiting.
    pub since: Millis,
}

impl WaitingEntry {
    /// The entries of a reservation's waiting units, a line each.
    pub fn of(order_id: &str, segment: &str, waiting: &[WaitingUnits]) -> Vec<WaitingEntry> {
        waiting_by_line(waiting)
            .into_iter()
            .map(|(line_id, sku, units, since)| WaitingEntry {
                order_id: order_id.to_owned(),
                line_id,
                sku,
                segment: segment.to_owned(),
                units,
                since,
            })
            .collect()
    }
}

/// A decision made on a reservation after its first (which is its plan): when, why, under
/// which rules and strategy, what became of the units, and the plan for the units moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    #[serde(default)]
    pub kind: DecisionKind,
    pub at: Millis,
    /// The caller's id of the reroute, its idempotency key (a fill or an expiry: an id of the
    /// service's own, unique).
    pub reroute_id: String,
    /// A digest of the reroute request, to tell a repeat from a different request.
    pub digest: String,
    /// The node that could not ship (empty for a fill or an expiry).
    pub node_id: String,
    /// Why it could not (for a fill or an expiry: `Other`, and not shown).
    pub reason: RerouteReason,
    pub rules_version: String,
    pub strategy: StrategyKind,
    pub fates: Vec<UnitFate>,
    /// The plan of the units moved (those that went to another node, and those left unfilled).
    pub plan: Plan,
    /// For a fill or an expiry: how long the units it took from those waiting had waited, in
    /// unit-milliseconds (each unit's wait, summed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waited_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Decision {
    /// The decision in a sentence.
    pub fn summary(&self) -> String {
        let (mut moved, mut waiting, mut cancelled) = (0u64, 0u64, 0u64);
        let mut nodes: Vec<&str> = Vec::new();
        for f in &self.fates {
            match &f.fate {
                Fate::Rerouted { node_id } | Fate::Filled { node_id } => {
                    moved += f.units;
                    if !nodes.contains(&node_id.as_str()) {
                        nodes.push(node_id);
                    }
                }
                Fate::Waiting => waiting += f.units,
                Fate::Cancelled => cancelled += f.units,
            }
        }
        match self.kind {
            DecisionKind::Fill => {
                return format!(
                    "{} waiting filled from {}",
                    units_word(moved),
                    nodes.join(", ")
                );
            }
            DecisionKind::Expire => {
                return format!(
                    "{} cancelled after waiting longer than the segment allows",
                    units_word(cancelled)
                );
            }
            DecisionKind::Reroute => {}
        }
        let mut parts = Vec::new();
        if moved > 0 {
            parts.push(format!("{moved} rerouted to {}", nodes.join(", ")));
        }
        if waiting > 0 {
            parts.push(format!("{waiting} waiting for supply"));
        }
        if cancelled > 0 {
            parts.push(format!("{cancelled} cancelled"));
        }
        format!(
            "{} at {} ({}): {}",
            units_word(moved + waiting + cancelled),
            self.node_id,
            self.reason.as_str(),
            parts.join("; ")
        )
    }
}

fn units_word(n: u64) -> String {
    if n == 1 {
        "1 unit".to_owned()
    } else {
        format!("{n} units")
    }
}

/// Units of one line that leave the node that could not ship them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gone {
    pub line_id: String,
    pub sku: String,
    pub units: u64,
}

/// A reroute for the store to apply, all or nothing: the units `gone` leave `node_id` (and
/// its on hand too when `removes_stock`), the allocations `new` are held at other nodes
/// (checked like a reserve's, with the same access), and the decision joins the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerouteHold {
    pub order_id: String,
    pub node_id: String,
    pub removes_stock: bool,
    pub gone: Vec<Gone>,
    pub new: Vec<Allocation>,
    pub waiting: Vec<WaitingUnits>,
    /// Units that leave the order's waiting units: filled by `new`, or cancelled.
    #[serde(default)]
    pub from_waiting: Vec<Gone>,
    pub use_safety_stock: bool,
    pub closed: Vec<Protection>,
    pub decision: Decision,
    /// Cancelled units dropped from the order.
    pub cancelled: u64,
}

impl RerouteHold {
    /// What the new holds may take, as the scripts read it (see [`super::access_arg`]).
    pub(crate) fn access_arg(&self) -> String {
        super::access_arg(self.use_safety_stock, &self.closed)
    }

    /// The lines the decision moved: those leaving the node, or for a fill or an expiry those
    /// leaving the waiting units; each once, in order.
    pub fn lines_moved(&self) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        for l in self.gone.iter().chain(&self.from_waiting) {
            if !lines.contains(&l.line_id) {
                lines.push(l.line_id.clone());
            }
        }
        lines
    }

    /// The skus touched, sorted, each once.
    pub fn skus(&self) -> Vec<String> {
        // units leaving the waiting list touch no sku's stock: only the units held for them do
        let mut skus: Vec<String> = self
            .gone
            .iter()
            .map(|g| g.sku.clone())
            .chain(self.new.iter().map(|a| a.sku.clone()))
            .collect();
        skus.sort();
        skus.dedup();
        skus
    }
}

/// What a reroute did in the store.
#[derive(Debug, Clone, PartialEq)]
pub enum RerouteOutcome {
    /// Applied: the reservation after it.
    Done(super::Reservation),
    /// A reroute with this id was applied before; nothing changed. The reservation now.
    Repeat(super::Reservation),
    /// The reservation is not as the reroute was planned against (its state, or the units
    /// outstanding at the node, changed); nothing changed.
    Changed,
    /// Another call is changing the order (a release, another reroute); nothing changed.
    Busy,
    /// A sku at a node no longer has the units; nothing changed.
    Insufficient {
        sku: String,
        node_id: String,
        wanted: u64,
        available: u64,
    },
}

/// Applies a reroute to an order's allocations: the gone units leave the node (the
/// allocation's quantity goes down and `rejected` up), the new ones join (to an allocation of
/// the same line and node if there is one). False, changing nothing, if the node does not have
/// the gone units outstanding.
pub fn apply_to_allocations(allocations: &mut Vec<Allocation>, hold: &RerouteHold) -> bool {
    for g in &hold.gone {
        let outstanding: u64 = allocations
            .iter()
            .filter(|a| a.line_id == g.line_id && a.node_id == hold.node_id)
            .map(Allocation::outstanding)
            .sum();
        if outstanding < g.units {
            return false;
        }
    }
    for g in &hold.gone {
        let mut left = g.units;
        for a in allocations
            .iter_mut()
            .filter(|a| a.line_id == g.line_id && a.node_id == hold.node_id)
        {
            let take = left.min(a.outstanding());
            a.quantity -= take;
            a.rejected += take;
            left -= take;
        }
    }
    for n in &hold.new {
        match allocations
            .iter_mut()
            .find(|a| a.line_id == n.line_id && a.node_id == n.node_id)
        {
            Some(a) => a.quantity += n.quantity,
            None => allocations.push(n.clone()),
        }
    }
    true
}

/// Units waiting per line, less `taken`: each line's oldest units leave first. `None`,
/// changing nothing, when a line does not have the units waiting.
pub fn take_waiting(waiting: &[WaitingUnits], taken: &[Gone]) -> Option<Vec<WaitingUnits>> {
    let mut left = waiting.to_vec();
    left.sort_by_key(|w| w.since);
    for t in taken {
        let mut want = t.units;
        for w in left.iter_mut().filter(|w| w.line_id == t.line_id) {
            let take = want.min(w.units);
            w.units -= take;
            want -= take;
        }
        if want > 0 {
            return None;
        }
    }
    left.retain(|w| w.units > 0);
    Some(left)
}

/// How long the units `taken` from `waiting` (each line's oldest first, as [`take_waiting`]
/// takes them) had waited by `now`, in unit-milliseconds.
pub fn waited_ms(waiting: &[WaitingUnits], taken: &[Gone], now: Millis) -> u64 {
    let mut oldest_first = waiting.to_vec();
    oldest_first.sort_by_key(|w| w.since);
    let mut total = 0u64;
    for t in taken {
        let mut want = t.units;
        for w in oldest_first.iter().filter(|w| w.line_id == t.line_id) {
            let take = want.min(w.units);
            let waited = u64::try_from(now - w.since).unwrap_or(0);
            total = total.saturating_add(take.saturating_mul(waited));
            want -= take;
        }
    }
    total
}

/// Units waiting per line, each line once.
pub fn waiting_by_line(waiting: &[WaitingUnits]) -> Vec<(String, String, u64, Millis)> {
    let mut lines: Vec<(String, String, u64, Millis)> = Vec::new();
    for w in waiting {
        match lines.iter_mut().find(|l| l.0 == w.line_id) {
            Some(l) => {
                l.2 += w.units;
                l.3 = l.3.min(w.since);
            }
            None => lines.push((w.line_id.clone(), w.sku.clone(), w.units, w.since)),
        }
    }
    lines
}
