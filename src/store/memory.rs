//! The in-memory store of the embedded demo: one process, one lock over all state, so every
//! operation is trivially atomic. Correct under any concurrency within the process; it does not
//! share stock with other replicas.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    AlertTurns, DecisionKind, HoldRequest, Inbound, InboundView, MAX_STOCK_UNITS, RerouteHold,
    RerouteOutcome, Reservation, ReservationState, ReserveOutcome, StockLevel, StockStore,
    StockUpdate, StockView, StoreError, UpdateKind, UpdateResult, WaitingEntry,
};
use crate::clock::Millis;
use crate::config::StockSeed;
use crate::events::alerts::AlertCheck;
use crate::events::{
    AlertChange, Change, Event, EventId, EventKind, MemoryLog, Page, ReservationChange, Retention,
    StockChange,
};

#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

/// A sku's expected receipts by (node, reference): the day and the units.
type ExpectedReceipts = BTreeMap<(String, String), (chrono::NaiveDate, u64)>;

#[derive(Debug, Default)]
struct State {
    stock: HashMap<String, HashMap<String, StockLevel>>,
    reservations: HashMap<String, Reservation>,
    /// Holds by expiry time, so a sweep touches only what has expired.
    expiries: BTreeSet<(Millis, String)>,
    /// Units of capacity used per (day, node).
    capacity: HashMap<(i64, String), u64>,
    /// What changed, appended under the same lock as the change.
    log: MemoryLog,
    /// Alert states by (sku, state name): low or not.
    alerts: HashMap<(String, String), bool>,
    /// Leases by name: holder and until when.
    leases: HashMap<String, (String, Millis)>,
    cursors: HashMap<String, EventId>,
    /// Orders with units waiting for supply, so that finding them reads only those.
    waiting: BTreeSet<String>,
    /// Expected receipts by sku, then (node, reference): the day and the units.
    inbound: HashMap<String, ExpectedReceipts>,
    /// Look-ahead: the demand learned, and the newest price table.
    demand: crate::lookahead::DemandWindow,
    prices: crate::lookahead::Prices,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store starting with these levels (no feed sequence applied yet).
    pub fn with_stock(seed: &[StockSeed]) -> Self {
        let store = Self::new();
        store.state.lock().stock = super::seed_view(seed);
        store
    }

    /// The same store, its log keeping what `retention` says and letting a watcher fall
    /// `watcher_buffer` events behind the live feed.
    pub fn with_events(self, retention: Retention, watcher_buffer: usize) -> Self {
        self.state.lock().log = MemoryLog::new(retention, watcher_buffer);
        self
    }
}

impl State {
    /// Appends a change to an order's reservation to the log.
    fn report(&mut self, order_id: &str, kind: EventKind, lines: &[String], now: Millis) {
        let Some(r) = self.reservations.get(order_id) else {
            return;
        };
        let change = Change::Reservation(ReservationChange {
            order_id: r.order_id.clone(),
            segment: r.segment.clone(),
            state: r.state,
            allocations: r.allocations.clone(),
            lines: lines.to_vec(),
        });
        self.log.append(now, kind, change);
    }

    fn level_mut(&mut self, sku: &str, node_id: &str) -> Option<&mut StockLevel> {
        self.stock.get_mut(sku).and_then(|m| m.get_mut(node_id))
    }

    /// Gives the outstanding units of an order's allocations (all, or those of `lines`) back.
    /// Whether any unit went back.
    fn return_stock(&mut self, order_id: &str, lines: Option<&[String]>) -> bool {
        let mut returned = false;
        let Some(reservation) = self.reservations.get_mut(order_id) else {
            return returned;
        };
        for a in reservation.allocations.iter_mut() {
            if lines.is_some_and(|ls| !ls.contains(&a.line_id)) {
                continue;
            }
            let out = a.outstanding();
            if out == 0 {
                continue;
            }
            a.released += out;
            returned = true;
            if let Some(used) = self
                .capacity
                .get_mut(&(reservation.capacity_day, a.node_id.clone()))
            {
                *used = used.saturating_sub(out);
            }
            if let Some(level) = self
                .stock
                .get_mut(&a.sku)
                .and_then(|m| m.get_mut(&a.node_id))
            {
                debug_assert!(level.reserved >= out);
                level.reserved = level.reserved.saturating_sub(out);
            }
        }
        returned
    }

    fn sweep(&mut self, now: Millis) -> u64 {
        let mut expired = 0;
        while let Some((at, _)) = self.expiries.first() {
            if *at > now {
                break;
            }
            let (_, order_id) = self.expiries.pop_first().expect("checked non-empty");
            if self
                .reservations
                .get(&order_id)
                .is_some_and(|r| r.state == ReservationState::Held)
            {
                self.return_stock(&order_id, None);
                let r = self.reservations.get_mut(&order_id).expect("present");
                r.state = ReservationState::Expired;
                r.waiting.clear();
                self.waiting.remove(&order_id);
                expired += 1;
                self.report(&order_id, EventKind::ReservationExpired, &[], now);
            }
        }
        self.log.trim(now);
        expired
    }

    fn settle(&mut self, order_id: &str) {
        let r = self.reservations.get_mut(order_id).expect("present");
        // units waiting keep the order open, even with nothing outstanding at any node
        if r.waiting.is_empty() && r.allocations.iter().all(|a| a.outstanding() == 0) {
            if r.state == ReservationState::Held
                && let Some(at) = r.expires_at
            {
                self.expiries.remove(&(at, order_id.to_owned()));
            }
            let shipped = r.allocations.iter().any(|a| a.shipped > 0);
            r.state = if shipped {
                ReservationState::Fulfilled
            } else {
                ReservationState::Released
            };
            if r.state == ReservationState::Released {
                r.expires_at = None;
            }
        }
    }

    /// Applies a feed update and reports what it changed.
    fn apply(&mut self, u: &StockUpdate, now: Millis) -> UpdateResult {
        let result = self.apply_update(u, now);
        // an expected receipt changes no level
        if result == UpdateResult::Applied
            && !matches!(u.kind, UpdateKind::Inbound { .. })
            && let Some(level) = self.stock.get(&u.sku).and_then(|m| m.get(&u.node_id))
        {
            let change = Change::Stock(StockChange {
                sku: u.sku.clone(),
                node_id: u.node_id.clone(),
                level: *level,
            });
            self.log.append(now, EventKind::StockChanged, change);
        }
        result
    }

    fn apply_update(&mut self, u: &StockUpdate, now: Millis) -> UpdateResult {
        if let Some(why) = super::update_out_of_bounds(&u.kind) {
            return UpdateResult::Rejected(why);
        }
        let current = self
            .stock
            .get(&u.sku)
            .and_then(|m| m.get(&u.node_id))
            .copied()
            .unwrap_or_default();
        if u.sequence <= current.last_sequence {
            return UpdateResult::Stale;
        }
        let mut next = current;
        next.last_sequence = u.sequence;
        match &u.kind {
            UpdateKind::Snapshot {
                on_hand,
                safety_stock,
                reorder_point,
            } => {
                next.on_hand = *on_hand;
                if let Some(s) = safety_stock {
                    next.safety_stock = *s;
                }
                next.reorder_point = reorder_point.apply(current.reorder_point);
            }
            UpdateKind::Delta { change } => {
                let value = i128::from(current.on_hand) + i128::from(*change);
                if value < 0 {
                    return UpdateResult::Rejected(super::delta_below_zero(
                        u,
                        *change,
                        current.on_hand,
                    ));
                }
                match u64::try_from(value) {
                    Ok(on_hand) if on_hand <= MAX_STOCK_UNITS => next.on_hand = on_hand,
                    _ => {
                        return UpdateResult::Rejected(super::delta_above_limit(
                            u,
                            *change,
                            current.on_hand,
                        ));
                    }
                }
            }
            UpdateKind::Shipment { order_id, quantity } => {
                let Some(r) = self.reservations.get_mut(order_id) else {
                    return UpdateResult::Rejected(format!(
                        "order_id: no reservation for order {order_id:?}"
                    ));
                };
                if r.state != ReservationState::Committed {
                    return UpdateResult::Rejected(format!(
                        "order_id: order {order_id:?} is {}; only a committed order ships",
                        r.state.as_str()
                    ));
                }
                let outstanding: u64 = r
                    .allocations
                    .iter()
                    .filter(|a| a.sku == u.sku && a.node_id == u.node_id)
                    .fold(0u64, |sum, a| sum.saturating_add(a.outstanding()));
                if *quantity > outstanding {
                    return UpdateResult::Rejected(format!(
                        "quantity: order {order_id:?} has {outstanding} units of {} outstanding at {}, fewer than {quantity}",
                        u.sku, u.node_id
                    ));
                }
                let mut left = *quantity;
                for a in r
                    .allocations
                    .iter_mut()
                    .filter(|a| a.sku == u.sku && a.node_id == u.node_id)
                {
                    let take = left.min(a.outstanding());
                    a.shipped += take;
                    left -= take;
                }
                next.on_hand = current.on_hand.saturating_sub(*quantity);
                next.reserved = current.reserved.saturating_sub(*quantity);
                self.stock
                    .entry(u.sku.clone())
                    .or_default()
                    .insert(u.node_id.clone(), next);
                self.settle(order_id);
                if self.reservations[order_id].state == ReservationState::Fulfilled {
                    self.report(order_id, EventKind::ReservationFulfilled, &[], now);
                }
                return UpdateResult::Applied;
            }
            UpdateKind::Inbound {
                units,
                expected,
                reference,
            } => {
                let expected_here = self.inbound.entry(u.sku.clone()).or_default();
                let key = (u.node_id.clone(), reference.clone());
                if *units == 0 {
                    expected_here.remove(&key);
                } else {
                    expected_here.insert(key, (*expected, *units));
                }
            }
        }
        self.stock
            .entry(u.sku.clone())
            .or_default()
            .insert(u.node_id.clone(), next);
        UpdateResult::Applied
    }
}

#[async_trait]
impl StockStore for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn read_stock(&self, skus: &[String], now: Millis) -> Result<StockView, StoreError> {
        let mut state = self.state.lock();
        state.sweep(now);
        Ok(skus
            .iter()
            .map(|sku| {
                (
                    sku.clone(),
                    state.stock.get(sku).cloned().unwrap_or_default(),
                )
            })
            .collect())
    }

    async fn apply_updates(
        &self,
        updates: &[StockUpdate],
        now: Millis,
    ) -> Result<Vec<UpdateResult>, StoreError> {
        let mut state = self.state.lock();
        state.sweep(now);
        Ok(updates.iter().map(|u| state.apply(u, now)).collect())
    }

    async fn reserve(
        &self,
        request: HoldRequest,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        let mut state = self.state.lock();
        state.sweep(now);
        if let Some(existing) = state.reservations.get(&request.order_id) {
            return Ok(ReserveOutcome::Existing(existing.clone()));
        }
        if let Some((sku, node_id, wanted)) = super::oversized_hold(&request.allocations) {
            let available = state
                .stock
                .get(&sku)
                .and_then(|m| m.get(&node_id))
                .map(|l| request.ats(l))
                .unwrap_or(0);
            return Ok(ReserveOutcome::Insufficient {
                sku,
                node_id,
                wanted,
                available,
            });
        }
        // every sum below is of units within the limit per (sku, node), so none can overflow
        let mut wanted: HashMap<(&str, &str), u64> = HashMap::new();
        for a in &request.allocations {
            *wanted.entry((&a.sku, &a.node_id)).or_default() += a.quantity;
        }
        let mut wanted: Vec<_> = wanted.into_iter().collect();
        wanted.sort();
        for ((sku, node_id), units) in &wanted {
            let available = state
                .stock
                .get(*sku)
                .and_then(|m| m.get(*node_id))
                .map(|l| request.ats(l))
                .unwrap_or(0);
            if *units > available {
                return Ok(ReserveOutcome::Insufficient {
                    sku: sku.to_string(),
                    node_id: node_id.to_string(),
                    wanted: *units,
                    available,
                });
            }
        }
        let mut per_node: HashMap<&str, u64> = HashMap::new();
        for a in &request.allocations {
            let units = per_node.entry(&a.node_id).or_default();
            *units = units.saturating_add(a.quantity);
        }
        for (node_id, limit) in &request.capacity_limits {
            let units = per_node.get(node_id.as_str()).copied().unwrap_or(0);
            let used = state
                .capacity
                .get(&(request.capacity_day, node_id.clone()))
                .copied()
                .unwrap_or(0);
            let available = limit.saturating_sub(used);
            if units > available {
                return Ok(ReserveOutcome::OverCapacity {
                    node_id: node_id.clone(),
                    wanted: units,
                    available,
                });
            }
        }
        for ((sku, node_id), units) in &wanted {
            let level = state.level_mut(sku, node_id).expect("checked above");
            level.reserved += units;
        }
        for (node_id, units) in per_node {
            let used = state
                .capacity
                .entry((request.capacity_day, node_id.to_owned()))
                .or_default();
            *used = used.saturating_add(units);
        }
        state
            .expiries
            .insert((request.expires_at, request.order_id.clone()));
        let reservation = request.into_held(now);
        let order_id = reservation.order_id.clone();
        if !reservation.waiting.is_empty() {
            state.waiting.insert(order_id.clone());
        }
        state.reservations.insert(order_id.clone(), reservation);
        state.report(&order_id, EventKind::ReservationCreated, &[], now);
        // A hold made already expired (a TTL shorter than the clock's step) returns at once.
        state.sweep(now);
        Ok(ReserveOutcome::Created(
            state.reservations[&order_id].clone(),
        ))
    }

    async fn capacity_used(
        &self,
        day: i64,
        now: Millis,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let mut state = self.state.lock();
        state.sweep(now);
        Ok(state
            .capacity
            .iter()
            .filter(|((d, _), used)| *d == day && **used > 0)
            .map(|((_, node), used)| (node.clone(), *used))
            .collect())
    }

    async fn commit(&self, order_id: &str, now: Millis) -> Result<Reservation, StoreError> {
        let mut state = self.state.lock();
        state.sweep(now);
        let Some(r) = state.reservations.get_mut(order_id) else {
            return Err(StoreError::NotFound(order_id.to_owned()));
        };
        match r.state {
            ReservationState::Held => {
                let at = r.expires_at.take();
                r.state = ReservationState::Committed;
                let r = r.clone();
                if let Some(at) = at {
                    state.expiries.remove(&(at, order_id.to_owned()));
                }
                state.report(order_id, EventKind::ReservationCommitted, &[], now);
                Ok(r)
            }
            ReservationState::Committed | ReservationState::Fulfilled => Ok(r.clone()),
            state @ (ReservationState::Released | ReservationState::Expired) => {
                Err(StoreError::InvalidState {
                    order_id: order_id.to_owned(),
                    state,
                    action: "committed",
                })
            }
        }
    }

    async fn release(
        &self,
        order_id: &str,
        line_ids: &[String],
        now: Millis,
    ) -> Result<Reservation, StoreError> {
        let mut state = self.state.lock();
        state.sweep(now);
        let Some(r) = state.reservations.get(order_id) else {
            return Err(StoreError::NotFound(order_id.to_owned()));
        };
        if let Some(unknown) = line_ids.iter().find(|id| !r.has_line(id)) {
            return Err(StoreError::UnknownLine {
                order_id: order_id.to_owned(),
                line_id: unknown.clone(),
            });
        }
        if matches!(
            r.state,
            ReservationState::Held | ReservationState::Committed
        ) {
            let lines = (!line_ids.is_empty()).then_some(line_ids);
            let before = r.state;
            let waited = r.waiting.len();
            let returned = state.return_stock(order_id, lines);
            // units waiting on the lines given back wait no more
            let r = state
                .reservations
                .get_mut(order_id)
                .expect("looked up above");
            r.waiting
                .retain(|w| lines.is_some_and(|l| !l.contains(&w.line_id)));
            let dropped = r.waiting.len() != waited;
            if r.waiting.is_empty() {
                state.waiting.remove(order_id);
                state.settle(order_id);
            }
            if returned || dropped || state.reservations[order_id].state != before {
                state.report(order_id, EventKind::ReservationReleased, line_ids, now);
            }
        }
        Ok(state.reservations[order_id].clone())
    }

    async fn reroute(&self, hold: RerouteHold, now: Millis) -> Result<RerouteOutcome, StoreError> {
        let mut state = self.state.lock();
        state.sweep(now);
        let Some(r) = state.reservations.get(&hold.order_id) else {
            return Ok(RerouteOutcome::Changed);
        };
        if r.history
            .iter()
            .any(|d| d.reroute_id == hold.decision.reroute_id)
        {
            return Ok(RerouteOutcome::Repeat(r.clone()));
        }
        if !matches!(
            r.state,
            ReservationState::Held | ReservationState::Committed
        ) {
            return Ok(RerouteOutcome::Changed);
        }
        let mut allocations = r.allocations.clone();
        if !super::reroute::apply_to_allocations(&mut allocations, &hold) {
            return Ok(RerouteOutcome::Changed);
        }
        let Some(mut waiting) = super::reroute::take_waiting(&r.waiting, &hold.from_waiting) else {
            return Ok(RerouteOutcome::Changed);
        };
        let day = r.capacity_day;
        let mut want: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for a in &hold.new {
            *want.entry((&a.sku, &a.node_id)).or_default() += a.quantity;
        }
        for (&(sku, node), &units) in &want {
            let level = state
                .stock
                .get(sku)
                .and_then(|m| m.get(node))
                .copied()
                .unwrap_or_default();
            let available = level.ats_for(hold.use_safety_stock, &hold.closed);
            if units > available {
                return Ok(RerouteOutcome::Insufficient {
                    sku: sku.to_owned(),
                    node_id: node.to_owned(),
                    wanted: units,
                    available,
                });
            }
        }
        for g in &hold.gone {
            if let Some(level) = state.level_mut(&g.sku, &hold.node_id) {
                level.reserved = level.reserved.saturating_sub(g.units);
                if hold.removes_stock {
                    level.on_hand = level.on_hand.saturating_sub(g.units);
                }
            }
            if let Some(used) = state.capacity.get_mut(&(day, hold.node_id.clone())) {
                *used = used.saturating_sub(g.units);
            }
        }
        for a in &hold.new {
            let level = state
                .stock
                .entry(a.sku.clone())
                .or_default()
                .entry(a.node_id.clone())
                .or_default();
            level.reserved += a.quantity;
            *state.capacity.entry((day, a.node_id.clone())).or_default() += a.quantity;
        }
        if hold.removes_stock {
            let skus: BTreeSet<&str> = hold.gone.iter().map(|g| g.sku.as_str()).collect();
            for sku in skus {
                if let Some(level) = state.stock.get(sku).and_then(|m| m.get(&hold.node_id)) {
                    let change = Change::Stock(StockChange {
                        sku: sku.to_owned(),
                        node_id: hold.node_id.clone(),
                        level: *level,
                    });
                    state.log.append(now, EventKind::StockChanged, change);
                }
            }
        }
        let r = state
            .reservations
            .get_mut(&hold.order_id)
            .expect("looked up above");
        r.allocations = allocations;
        waiting.extend(hold.waiting.iter().cloned());
        let waits = !waiting.is_empty();
        r.waiting = waiting;
        r.history.push(hold.decision.clone());
        if waits {
            state.waiting.insert(hold.order_id.clone());
        } else {
            state.waiting.remove(&hold.order_id);
            // units waiting keep the order open, even with nothing outstanding at any node
            state.settle(&hold.order_id);
        }
        let lines = hold.lines_moved();
        match hold.decision.kind {
            DecisionKind::Reroute => {
                state.report(&hold.order_id, EventKind::ReservationRerouted, &lines, now)
            }
            DecisionKind::Fill => {
                state.report(&hold.order_id, EventKind::BackorderFilled, &lines, now)
            }
            DecisionKind::Expire => {}
        }
        if hold.cancelled > 0 {
            state.report(&hold.order_id, EventKind::UnitsCancelled, &lines, now);
        }
        Ok(RerouteOutcome::Done(
            state.reservations[&hold.order_id].clone(),
        ))
    }

    async fn get_reservation(
        &self,
        order_id: &str,
        now: Millis,
    ) -> Result<Option<Reservation>, StoreError> {
        let mut state = self.state.lock();
        state.sweep(now);
        Ok(state.reservations.get(order_id).cloned())
    }

    async fn expire_holds(&self, now: Millis) -> Result<u64, StoreError> {
        Ok(self.state.lock().sweep(now))
    }

    async fn read_events(&self, after: Option<EventId>, limit: usize) -> Result<Page, StoreError> {
        Ok(self.state.lock().log.read(after, limit)?)
    }

    async fn subscribe_events(
        &self,
    ) -> Result<tokio::sync::broadcast::Receiver<std::sync::Arc<Event>>, StoreError> {
        Ok(self.state.lock().log.subscribe())
    }

    async fn trim_events(&self, now: Millis) -> Result<u64, StoreError> {
        let mut state = self.state.lock();
        state.log.trim(now);
        Ok(state.log.len() as u64)
    }

    async fn record_alerts(
        &self,
        sku: &str,
        seen: &HashMap<String, StockLevel>,
        checks: &[AlertCheck],
        now: Millis,
    ) -> Result<Option<AlertTurns>, StoreError> {
        let mut state = self.state.lock();
        let empty = HashMap::new();
        if state.stock.get(sku).unwrap_or(&empty) != seen {
            return Ok(None);
        }
        let mut reported = Vec::new();
        for c in checks {
            let key = (sku.to_owned(), c.field.clone());
            let (low, turned) = c.next(state.alerts.get(&key).copied());
            state.alerts.insert(key, low);
            if let Some(kind) = turned {
                let change = Change::Alert(AlertChange {
                    sku: sku.to_owned(),
                    node_id: c.node_id.clone(),
                    segment: c.segment.clone(),
                    ats: c.ats,
                    threshold: c.threshold,
                });
                state.log.append(now, kind, change);
            }
            reported.push((low, turned));
        }
        Ok(Some(reported))
    }

    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock();
        let free = state
            .leases
            .get(name)
            .is_none_or(|(h, until)| h == holder || *until <= now);
        if free && ttl_ms == 0 {
            state.leases.remove(name);
        } else if free {
            let until = now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
            state
                .leases
                .insert(name.to_owned(), (holder.to_owned(), until));
        }
        Ok(free)
    }

    async fn cursor(&self, name: &str) -> Result<Option<EventId>, StoreError> {
        Ok(self.state.lock().cursors.get(name).copied())
    }

    async fn save_cursor(
        &self,
        name: &str,
        holder: &str,
        cursor: EventId,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut state = self.state.lock();
        let held = state
            .leases
            .get(name)
            .is_some_and(|(h, until)| h == holder && *until > now);
        if held {
            state.cursors.insert(name.to_owned(), cursor);
        }
        Ok(held)
    }

    async fn read_inbound(&self, skus: &[String]) -> Result<InboundView, StoreError> {
        let state = self.state.lock();
        let mut view = InboundView::new();
        for sku in skus {
            let Some(expected) = state.inbound.get(sku).filter(|e| !e.is_empty()) else {
                continue;
            };
            let mut list: Vec<Inbound> = expected
                .iter()
                .map(|((node, reference), (day, units))| Inbound {
                    node_id: node.clone(),
                    reference: reference.clone(),
                    expected: *day,
                    units: *units,
                })
                .collect();
            list.sort_by(|a, b| {
                (a.expected, &a.node_id, &a.reference).cmp(&(b.expected, &b.node_id, &b.reference))
            });
            view.insert(sku.clone(), list);
        }
        Ok(view)
    }

    async fn waiting_for(&self, skus: &[String]) -> Result<Vec<WaitingEntry>, StoreError> {
        let state = self.state.lock();
        let mut entries: Vec<WaitingEntry> = state
            .waiting
            .iter()
            .filter_map(|id| state.reservations.get(id))
            .filter(|r| !r.waiting.is_empty())
            .flat_map(|r| WaitingEntry::of(&r.order_id, &r.segment, &r.waiting))
            .filter(|e| skus.is_empty() || skus.contains(&e.sku))
            .collect();
        entries.sort_by(|a, b| {
            (a.since, &a.order_id, &a.line_id).cmp(&(b.since, &b.order_id, &b.line_id))
        });
        Ok(entries)
    }

    async fn record_demand(
        &self,
        seen: &crate::lookahead::Observed,
        now: Millis,
        window_ms: Millis,
    ) -> Result<(), StoreError> {
        self.state.lock().demand.record(now, seen, window_ms);
        Ok(())
    }

    async fn read_demand(
        &self,
        now: Millis,
        window_ms: Millis,
    ) -> Result<crate::lookahead::Demand, StoreError> {
        Ok(self.state.lock().demand.read(now, window_ms))
    }

    async fn save_prices(&self, prices: &crate::lookahead::Prices) -> Result<u64, StoreError> {
        let mut state = self.state.lock();
        let version = state.prices.version + 1;
        state.prices = crate::lookahead::Prices {
            version,
            ..prices.clone()
        };
        Ok(version)
    }

    async fn read_prices(
        &self,
        known: u64,
    ) -> Result<Option<crate::lookahead::Prices>, StoreError> {
        let state = self.state.lock();
        Ok((state.prices.version != known).then(|| state.prices.clone()))
    }

    async fn active_holds(&self, now: Millis) -> Result<u64, StoreError> {
        let state = self.state.lock();
        Ok(state
            .reservations
            .values()
            .filter(|r| {
                r.state == ReservationState::Held && r.expires_at.is_some_and(|at| at > now)
            })
            .count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::MemoryStore;
    use crate::store::StockStore;

    crate::store_conformance_tests!(async { Arc::new(MemoryStore::new()) as Arc<dyn StockStore> });
}
