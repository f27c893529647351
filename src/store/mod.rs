//! Stock, reservations, holds and feed sequences behind one trait, so the in-memory store of
//! the embedded demo and the production store behave the same: both run the suite in
//! [`conformance`].
//!
//! The store owns every invariant that concurrency could break: a reserve is checked and
//! applied atomically and all-or-nothing, a feed update applies at most once, an expired hold
//! returns its stock once. Callers pass the time in, so expiry is deterministic under test.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::clock::Millis;
use crate::config::StockSeed;
use crate::domain::Plan;
use crate::events::alerts::AlertCheck;
use crate::events::{CursorError, Event, EventId, EventKind, Page};

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod memory;
pub mod redis;
pub mod reroute;

pub use self::redis::RedisStore;
pub use memory::MemoryStore;
pub use reroute::{
    Decision, DecisionKind, Fate, Gone, RerouteHold, RerouteOutcome, RerouteReason, UnitFate,
    WaitingEntry, WaitingUnits,
};

/// The most units any one stock figure may be: on hand, safety stock, the size of a delta or a
/// shipment, and on hand after a delta. Far above any node's real stock, and low enough that
/// every figure is exact as a Lua number in Redis (below 2^53) and that a network total of a
/// sku stays far inside `i64` (it would take over nine million nodes at the limit to reach it).
pub const MAX_STOCK_UNITS: u64 = 1_000_000_000_000;

/// Why an update's figures are out of bounds, before any stock is looked at: a sentence that
/// names the request field (`quantity`, `safety_stock` or `reorder_point`), or `None` when every figure is within
/// [`MAX_STOCK_UNITS`]. Both stores reject such an update whole, and consume no sequence.
pub fn update_out_of_bounds(kind: &UpdateKind) -> Option<String> {
    let above = |field: &str, value: u64| {
        (value > MAX_STOCK_UNITS)
            .then(|| format!("{field}: {value} is above the limit of {MAX_STOCK_UNITS}"))
    };
    match kind {
        UpdateKind::Snapshot {
            on_hand,
            safety_stock,
            reorder_point,
        } => above("quantity", *on_hand)
            .or_else(|| safety_stock.and_then(|s| above("safety_stock", s)))
            .or_else(|| match reorder_point {
                ReorderPoint::Set(n) => above("reorder_point", *n),
                _ => None,
            }),
        UpdateKind::Delta { change } => (change.unsigned_abs() > MAX_STOCK_UNITS).then(|| {
            format!("quantity: a delta of {change} is larger than the limit of {MAX_STOCK_UNITS}")
        }),
        UpdateKind::Shipment { quantity, .. } => above("quantity", *quantity),
        UpdateKind::Inbound { units, .. } => above("quantity", *units),
    }
}

/// A token unique across replicas and restarts: names an attempt at a reserve, or a lease's
/// holder.
pub(crate) fn unique_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", hasher.finish())
}

/// Characters of stored text, or of a client's value, an error message quotes at most.
pub(crate) const QUOTED_CHARS: usize = 64;

/// Text read from the store (or an error about it) for a message: quoted, and cut after `max`
/// characters with its length said, so that a message never grows with what was stored (a
/// status above gRPC's 8 KiB metadata limit would not reach the client).
pub(crate) fn quoted(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
    }
}

/// Stored text or a client's value for a message, quoted and cut after [`QUOTED_CHARS`]
/// characters.
pub(crate) fn shown(text: &str) -> String {
    quoted(text, QUOTED_CHARS)
}

/// The rejection of a delta that would take on hand below zero.
pub(crate) fn delta_below_zero(u: &StockUpdate, change: i64, on_hand: u64) -> String {
    format!(
        "quantity: a delta of {change} would take on hand of {} at {} below zero (on hand {on_hand})",
        u.sku, u.node_id
    )
}

/// The rejection of a delta that would take on hand above [`MAX_STOCK_UNITS`].
pub(crate) fn delta_above_limit(u: &StockUpdate, change: i64, on_hand: u64) -> String {
    format!(
        "quantity: a delta of {change} would take on hand of {} at {} above the limit of {MAX_STOCK_UNITS} (on hand {on_hand})",
        u.sku, u.node_id
    )
}

/// The (sku, node) pair of a hold that wants more units than any level can have, and how many
/// it wants in all (saturating); such a hold is refused as insufficient before any store
/// arithmetic sees it.
pub(crate) fn oversized_hold(allocations: &[Allocation]) -> Option<(String, String, u64)> {
    let mut wanted: HashMap<(&str, &str), u64> = HashMap::new();
    for a in allocations {
        let units = wanted.entry((&a.sku, &a.node_id)).or_default();
        *units = units.saturating_add(a.quantity);
    }
    let mut over: Vec<_> = wanted
        .into_iter()
        .filter(|(_, units)| *units > MAX_STOCK_UNITS)
        .collect();
    over.sort();
    over.into_iter()
        .next()
        .map(|((sku, node), units)| (sku.to_owned(), node.to_owned(), units))
}

/// Stock of one sku at one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub on_hand: u64,
    /// Held and committed units not yet shipped.
    pub reserved: u64,
    pub safety_stock: u64,
    /// The last feed sequence applied (0 if none).
    pub last_sequence: u64,
    /// The feed's reorder point for this node and sku: a low-stock alert when the node's ATS
    /// falls to or below it, in place of the thresholds of `alerts.toml`. Set by snapshots.
    #[serde(default)]
    pub reorder_point: Option<u64>,
}

impl StockLevel {
    /// Available to source: on hand less reserved, less safety stock unless it may be used;
    /// never below zero.
    pub fn ats(&self, use_safety_stock: bool) -> u64 {
        let free = self.on_hand.saturating_sub(self.reserved);
        if use_safety_stock {
            free
        } else {
            free.saturating_sub(self.safety_stock)
        }
    }
}

/// Per alert check, its state after a look (low or not) and what was reported of it.
pub type AlertTurns = Vec<(bool, Option<EventKind>)>;

/// What a segment keeps of a node's stock of a sku from every segment of a worse priority: the
/// larger of `units` and `share` of on hand, rounded up. Kept units count against the worse
/// segments' ATS alone, like nested booking limits: every segment's holds count against the
/// same free stock, so a worse segment may take only what is free beyond the kept units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Protection {
    pub units: u64,
    /// From 0 to 1.
    pub share: f64,
}

impl Protection {
    pub fn is_none(&self) -> bool {
        self.units == 0 && self.share <= 0.0
    }

    /// Units kept of `on_hand`.
    pub fn kept(&self, on_hand: u64) -> u64 {
        // exact: on hand is below 2^53, and Redis's scripts compute the same doubles
        let by_share = (self.share * on_hand as f64).ceil();
        self.units.max(by_share as u64)
    }

    /// As the scripts read it: `|units:share`, the share in plain decimals (Rust never writes
    /// an exponent), and -0 written as 0.
    pub fn to_arg(&self) -> String {
        let share = if self.share > 0.0 { self.share } else { 0.0 };
        format!("|{}:{share}", self.units)
    }
}

impl StockLevel {
    /// Units kept from a segment by the protections of better segments (`closed`).
    pub fn kept_from(&self, closed: &[Protection]) -> u64 {
        closed
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.kept(self.on_hand)))
    }

    /// ATS as a segment sees it: with or without safety stock, less the units better segments
    /// keep from it (`closed`).
    pub fn ats_for(&self, use_safety_stock: bool, closed: &[Protection]) -> u64 {
        self.ats(use_safety_stock)
            .saturating_sub(self.kept_from(closed))
    }
}

/// Stock by sku, then by node. Nodes that never had a level for the sku are absent.
pub type StockView = HashMap<String, HashMap<String, StockLevel>>;

/// Starting stock rows as levels, with nothing reserved and no feed sequence applied.
pub fn seed_view(rows: &[StockSeed]) -> StockView {
    let mut view = StockView::new();
    for row in rows {
        view.entry(row.sku.clone()).or_default().insert(
            row.node.clone(),
            StockLevel {
                on_hand: row.on_hand,
                safety_stock: row.safety_stock,
                ..StockLevel::default()
            },
        );
    }
    view
}

/// What a feed update does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpdateKind {
    /// Absolute on hand, and the safety stock and reorder point when given.
    Snapshot {
        on_hand: u64,
        safety_stock: Option<u64>,
        reorder_point: ReorderPoint,
    },
    /// On hand goes up or down by this much.
    Delta { change: i64 },
    /// Units of an order left the node: on hand and the order's allocation both go down.
    Shipment { order_id: String, quantity: u64 },
    /// Units expected at the node on a day, under a reference: replaces the expected receipt
    /// of that reference (0 units removes it). Nothing becomes available until a snapshot or
    /// delta receives them.
    Inbound {
        units: u64,
        expected: chrono::NaiveDate,
        reference: String,
    },
}

/// Units expected at a node on a day, under a reference (an inbound update not yet received).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    pub node_id: String,
    pub reference: String,
    pub expected: chrono::NaiveDate,
    pub units: u64,
}

/// Expected receipts of each sku.
pub type InboundView = HashMap<String, Vec<Inbound>>;

/// What a snapshot does to the node's reorder point for the sku.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReorderPoint {
    /// Leaves it as it is.
    #[default]
    Keep,
    Set(u64),
    /// Removes it: the thresholds of `alerts.toml` apply again.
    Clear,
}

impl ReorderPoint {
    /// The reorder point after this, from the one before.
    pub fn apply(self, before: Option<u64>) -> Option<u64> {
        match self {
            Self::Keep => before,
            Self::Set(n) => Some(n),
            Self::Clear => None,
        }
    }
}

/// One feed update, already checked for shape (ids non-empty, sequence at least 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockUpdate {
    pub node_id: String,
    pub sku: String,
    pub sequence: u64,
    pub kind: UpdateKind,
}

/// What became of one feed update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateResult {
    Applied,
    /// Its sequence was not above the last applied one.
    Stale,
    /// Nothing changed; the sentence says why.
    Rejected(String),
}

/// Where a reservation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReservationState {
    Held,
    Committed,
    Released,
    Expired,
    Fulfilled,
}

impl ReservationState {
    pub const ALL: [ReservationState; 5] = [
        ReservationState::Held,
        ReservationState::Committed,
        ReservationState::Released,
        ReservationState::Expired,
        ReservationState::Fulfilled,
    ];

    /// The state [`as_str`](Self::as_str) names.
    pub fn parse(name: &str) -> Option<ReservationState> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ReservationState::Held => "held",
            ReservationState::Committed => "committed",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
            ReservationState::Fulfilled => "fulfilled",
        }
    }
}

/// Units of one order line held or allocated at one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub line_id: String,
    pub sku: String,
    pub node_id: String,
    pub quantity: u64,
    pub shipped: u64,
    pub released: u64,
    /// Units the node could not ship and that left it by a reroute (no longer in `quantity`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Allocation {
    /// What a plan holds: one allocation per line of each shipment.
    pub fn of_plan(plan: &Plan) -> Vec<Allocation> {
        plan.shipments
            .iter()
            .flat_map(|s| {
                s.lines.iter().map(|l| Allocation {
                    line_id: l.line_id.clone(),
                    sku: l.sku.clone(),
                    node_id: s.node_id.clone(),
                    quantity: l.quantity,
                    shipped: 0,
                    released: 0,
                    rejected: 0,
                })
            })
            .collect()
    }

    /// Units still reserved: neither shipped nor given back.
    pub fn outstanding(&self) -> u64 {
        self.quantity
            .saturating_sub(self.shipped.saturating_add(self.released))
    }
}

/// An order's hold or allocation, and the plan it was made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub order_id: String,
    /// Digest of the order, to tell a repeated Reserve from a different order under the same id.
    pub fingerprint: String,
    pub segment: String,
    pub state: ReservationState,
    pub plan: Plan,
    pub allocations: Vec<Allocation>,
    pub created_at: Millis,
    /// Set while held.
    pub expires_at: Option<Millis>,
    /// The day (since the Unix epoch) whose node capacity the order consumes.
    pub capacity_day: i64,
    /// The order as reserved, to plan its units again (absent in records made before it was
    /// kept).
    pub order: Option<crate::domain::Order>,
    /// Every decision after the first (the plan), oldest first.
    pub history: Vec<Decision>,
    /// Units no node could ship, waiting for supply.
    pub waiting: Vec<WaitingUnits>,
}

impl Reservation {
    /// Whether the order has this line: held, planned, waiting, or in the order as reserved.
    pub fn has_line(&self, line_id: &str) -> bool {
        self.allocations.iter().any(|a| a.line_id == line_id)
            || self.plan.unfilled.iter().any(|u| u.line_id == line_id)
            || self.waiting.iter().any(|w| w.line_id == line_id)
            || self
                .order
                .as_ref()
                .is_some_and(|o| o.lines.iter().any(|l| l.line_id == line_id))
    }
}

/// A request to hold stock for an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldRequest {
    pub order_id: String,
    pub fingerprint: String,
    pub segment: String,
    /// Whether the segment may draw down safety stock.
    pub use_safety_stock: bool,
    /// What segments of a better priority keep from this one at every node and sku.
    #[serde(default)]
    pub closed: Vec<Protection>,
    pub plan: Plan,
    /// What to hold; every quantity above zero.
    pub allocations: Vec<Allocation>,
    pub expires_at: Millis,
    /// The day (since the Unix epoch) whose node capacity the order consumes.
    pub capacity_day: i64,
    /// Daily capacity in units of each node the allocations use.
    pub capacity_limits: Vec<(String, u64)>,
    /// The order, kept with the reservation.
    #[serde(default)]
    pub order: Option<crate::domain::Order>,
    /// Units no node can ship now that wait for supply (a segment that backorders).
    #[serde(default)]
    pub waiting: Vec<WaitingUnits>,
}

impl HoldRequest {
    /// A node's ATS of a sku as this request may take it.
    pub fn ats(&self, level: &StockLevel) -> u64 {
        level.ats_for(self.use_safety_stock, &self.closed)
    }

    /// What the request may take, as the scripts read it (see [`access_arg`]).
    pub(crate) fn access_arg(&self) -> String {
        access_arg(self.use_safety_stock, &self.closed)
    }

    /// The reservation this request makes once its stock is held at `now`.
    pub fn into_held(self, now: Millis) -> Reservation {
        Reservation {
            order_id: self.order_id,
            fingerprint: self.fingerprint,
            segment: self.segment,
            state: ReservationState::Held,
            plan: self.plan,
            allocations: self.allocations,
            created_at: now,
            expires_at: Some(self.expires_at),
            capacity_day: self.capacity_day,
            order: self.order,
            history: Vec::new(),
            waiting: self.waiting,
        }
    }
}

/// What a hold may take, as the scripts read it: `1` or `0` for the use of safety stock, then
/// `|units:share` for each protection closed to it.
pub(crate) fn access_arg(use_safety_stock: bool, closed: &[Protection]) -> String {
    let mut arg = if use_safety_stock { "1" } else { "0" }.to_owned();
    for p in closed {
        arg.push_str(&p.to_arg());
    }
    arg
}

/// What a reserve did.
#[derive(Debug, Clone, PartialEq)]
pub enum ReserveOutcome {
    /// The stock is held.
    Created(Reservation),
    /// A reservation for this order id exists already; nothing changed.
    Existing(Reservation),
    /// Some sku at some node no longer has the units; nothing changed.
    Insufficient {
        sku: String,
        node_id: String,
        wanted: u64,
        available: u64,
    },
    /// A node's capacity for the day no longer has room; nothing changed.
    OverCapacity {
        node_id: String,
        wanted: u64,
        available: u64,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("no reservation for order {0:?}")]
    NotFound(String),
    #[error("order {order_id:?} is {state}, so it cannot be {action}", state = .state.as_str())]
    InvalidState {
        order_id: String,
        state: ReservationState,
        action: &'static str,
    },
    #[error("order {order_id:?} has no line {line_id:?}")]
    UnknownLine { order_id: String, line_id: String },
    #[error("stock store unavailable: {0}")]
    Unavailable(String),
    /// Another request is half-way through changing this order (a reserve on Redis Cluster, a
    /// release or a reroute on Redis go in steps); its outcome decides the answer, so asking
    /// again shortly gets it.
    #[error(
        "order {0:?} is being changed by another request (a reserve, release or reroute); try again"
    )]
    InFlight(String),
    #[error("stock store data is inconsistent: {0}")]
    Corrupt(String),
    /// The event log cannot be read after this cursor.
    #[error(transparent)]
    Cursor(#[from] CursorError),
}

/// The storage every replica of the service shares.
#[async_trait]
pub trait StockStore: Send + Sync + std::fmt::Debug {
    /// Ok when the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stock of every node for these skus as of `now`: units of holds expired by `now` are not
    /// counted as reserved, whether or not a sweep has given them back yet (a read may leave
    /// that to [`expire_holds`](StockStore::expire_holds) and never waits on another request's
    /// sweep). A level the store cannot read fails the read with [`StoreError::Corrupt`] naming
    /// the sku and the node; a snapshot of that node and sku repairs it.
    async fn read_stock(&self, skus: &[String], now: Millis) -> Result<StockView, StoreError>;

    /// The levels of these skus as stored, holds due but not yet swept counted as held: what
    /// [`record_alerts`](StockStore::record_alerts) compares its `seen` levels with. The
    /// sweep's give-back is a change of its own, looked at when it comes.
    async fn read_stored_levels(
        &self,
        skus: &[String],
        now: Millis,
    ) -> Result<StockView, StoreError> {
        self.read_stock(skus, now).await
    }

    /// Applies feed updates in order; each is applied, stale or rejected on its own.
    ///
    /// Rejected, changing nothing: a figure above [`MAX_STOCK_UNITS`] (see
    /// [`update_out_of_bounds`]), a delta that would take on hand below zero or above the limit,
    /// and a delta or shipment of a level the store cannot read. A snapshot of such a level
    /// repairs it: it sets on hand (and safety stock when given, else keeps a readable one or
    /// 0), takes its sequence, and recounts reserved units from the holds. An unreadable old
    /// sequence is replaced whatever the snapshot's; a readable one still makes older
    /// snapshots stale.
    async fn apply_updates(
        &self,
        updates: &[StockUpdate],
        now: Millis,
    ) -> Result<Vec<UpdateResult>, StoreError>;

    /// The expected receipts (inbound updates not yet received) of these skus, earliest first;
    /// skus with none are absent.
    async fn read_inbound(&self, skus: &[String]) -> Result<InboundView, StoreError>;

    /// Holds the stock for an order, all or nothing, unless the order id is known already.
    async fn reserve(
        &self,
        request: HoldRequest,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError>;

    /// Units of capacity each node has committed to on `day` (days since the Unix epoch), by
    /// holds and allocations not released, not counting holds expired by `now` (as
    /// [`read_stock`](StockStore::read_stock)); nodes with none are absent.
    async fn capacity_used(
        &self,
        day: i64,
        now: Millis,
    ) -> Result<HashMap<String, u64>, StoreError>;

    /// Stock of these skus and the capacity used on `day`, both as [`read_stock`] and
    /// [`capacity_used`] give them; one call, so that a shared store can read both at once.
    ///
    /// [`read_stock`]: StockStore::read_stock
    /// [`capacity_used`]: StockStore::capacity_used
    async fn read_state(
        &self,
        skus: &[String],
        day: i64,
        now: Millis,
    ) -> Result<(StockView, HashMap<String, u64>), StoreError> {
        let stock = self.read_stock(skus, now).await?;
        let used = self.capacity_used(day, now).await?;
        Ok((stock, used))
    }

    /// A held order becomes committed (idempotent).
    async fn commit(&self, order_id: &str, now: Millis) -> Result<Reservation, StoreError>;

    /// Gives back the outstanding units of the named lines, or of every line if none are named
    /// (idempotent).
    async fn release(
        &self,
        order_id: &str,
        line_ids: &[String],
        now: Millis,
    ) -> Result<Reservation, StoreError>;

    /// Applies a reroute (see [`RerouteHold`]) all or nothing: the gone units leave the node,
    /// the units `from_waiting` leave the order's waiting units (unless they are no longer
    /// waiting: [`RerouteOutcome::Changed`]), the new ones are held, the decision joins the
    /// history, and the change is reported (`rerouted` for a reroute, `backorder_filled` for a
    /// fill, and `units_cancelled` when units were dropped). A held order stays held
    /// with the same expiry; a committed one stays committed. A reroute id seen before changes
    /// nothing ([`RerouteOutcome::Repeat`]). A replica stopping half-way leaves the reroute
    /// done or undone by a later call or sweep, never half.
    async fn reroute(&self, hold: RerouteHold, now: Millis) -> Result<RerouteOutcome, StoreError>;

    /// Notes lines waiting for supply in the store's index of them, before the reservation
    /// says they wait (a reserve or reroute that leaves units waiting notes them first), so
    /// that the index lists every line that waits, and maybe some that no longer do. A store
    /// that finds waiting lines from its reservations directly has nothing to note.
    async fn note_waiting(&self, _entries: &[WaitingEntry]) -> Result<(), StoreError> {
        Ok(())
    }

    /// The lines waiting for supply of these skus (of every sku if none are named), as the
    /// index lists them.
    async fn waiting_for(&self, skus: &[String]) -> Result<Vec<WaitingEntry>, StoreError>;

    /// Units waiting for these skus by segment, as the index counts them; skus with none are
    /// absent.
    async fn waiting_units(
        &self,
        skus: &[String],
    ) -> Result<HashMap<String, std::collections::BTreeMap<String, u64>>, StoreError> {
        let mut by_sku: HashMap<String, std::collections::BTreeMap<String, u64>> = HashMap::new();
        if skus.is_empty() {
            return Ok(by_sku);
        }
        for e in self.waiting_for(skus).await? {
            *by_sku
                .entry(e.sku)
                .or_default()
                .entry(e.segment)
                .or_default() += e.units;
        }
        Ok(by_sku)
    }

    /// Drops lines from the index of waiting lines, each only if it is listed as given (the
    /// same `since` and units): a line noted again meanwhile stays.
    async fn forget_waiting(&self, _entries: &[WaitingEntry]) -> Result<(), StoreError> {
        Ok(())
    }

    /// A reservation by order id; a hold past its expiry is expired first.
    async fn get_reservation(
        &self,
        order_id: &str,
        now: Millis,
    ) -> Result<Option<Reservation>, StoreError>;

    /// Returns the stock of every hold expired by `now`; how many holds expired.
    async fn expire_holds(&self, now: Millis) -> Result<u64, StoreError>;

    /// Up to `limit` events of the log after `after` (from the oldest kept when `None`), oldest
    /// first. A cursor after the newest event, or one after which events are no longer kept, is
    /// [`StoreError::Cursor`]: reading on would skip what was dropped.
    async fn read_events(&self, after: Option<EventId>, limit: usize) -> Result<Page, StoreError>;

    /// Every event appended to the log from now on (whichever replica made the change), in
    /// log order. A receiver that falls `events.watcher_buffer` events behind gets `Lagged`.
    async fn subscribe_events(&self) -> Result<broadcast::Receiver<Arc<Event>>, StoreError>;

    /// Drops events older than the log's retention age as of `now` (the count is bounded as
    /// events are appended); how many events the log keeps after it.
    async fn trim_events(&self, now: Millis) -> Result<u64, StoreError>;

    /// Turns the alert states of `sku` as each check says ([`AlertCheck::next`]) and appends
    /// an event for each turn, in one atomic step, so that a crossing is reported once however
    /// many replicas look at it at once. Returns, for each check, its state after (low or not)
    /// and what was reported of it.
    ///
    /// `seen` are the sku's levels the checks were made from (every node that has one). If
    /// they are not the sku's levels any more, nothing is turned and `None` is returned: a
    /// replica that read the levels before a change must not report after one that read them
    /// after it (say, a recovery from a level already gone). The change names the sku in the
    /// log, so it is looked at again.
    async fn record_alerts(
        &self,
        sku: &str,
        seen: &HashMap<String, StockLevel>,
        checks: &[AlertCheck],
        now: Millis,
    ) -> Result<Option<AlertTurns>, StoreError>;

    /// Takes the lease `name` for `holder` for `ttl_ms`, or renews it if `holder` has it; false
    /// while another holder has it. A holder that stops renewing loses it once `ttl_ms` pass.
    /// A `ttl_ms` of 0 lets the lease go at once if `holder` has it (true), so the next holder
    /// need not wait; it changes nothing when another holder has it (false).
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// The cursor saved under `name` (a webhook's last event delivered), if any.
    async fn cursor(&self, name: &str) -> Result<Option<EventId>, StoreError>;

    /// Saves the cursor `name`, if `holder` holds the lease of the same name (checked in the
    /// same step); false when it does not, and nothing is saved.
    async fn save_cursor(
        &self,
        name: &str,
        holder: &str,
        cursor: EventId,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Counts what an order asked for as demand for look-ahead, at `now`; counts older than
    /// `window_ms` may be forgotten. Every replica adds to the same counts.
    async fn record_demand(
        &self,
        seen: &crate::lookahead::Observed,
        now: Millis,
        window_ms: Millis,
    ) -> Result<(), StoreError>;

    /// The demand counted over the `window_ms` before `now`, nothing after it.
    async fn read_demand(
        &self,
        now: Millis,
        window_ms: Millis,
    ) -> Result<crate::lookahead::Demand, StoreError>;

    /// Publishes `prices` as the newest look-ahead table, under the next version, which it
    /// returns (the table's own `version` is not read).
    async fn save_prices(&self, prices: &crate::lookahead::Prices) -> Result<u64, StoreError>;

    /// The newest look-ahead table, unless its version is `known` (`None`: nothing newer). A
    /// store with none published answers version 0 and no prices.
    async fn read_prices(&self, known: u64)
    -> Result<Option<crate::lookahead::Prices>, StoreError>;

    /// Holds still waiting for commit, release or expiry, for the `holds_active` gauge. The
    /// Redis store counts what its expiry set still tracks, which includes committed holds
    /// until their hold time passes; see its docs.
    async fn active_holds(&self, now: Millis) -> Result<u64, StoreError>;
}
