//! The service's core: quotes, reservations and stock feeds in domain terms. It knows the
//! network and the segment rules, asks a strategy for plans and the store for stock, and keeps
//! the promises the API makes (idempotent reserve, all-or-nothing holds, re-planning when a
//! concurrent reserve took the stock a plan counted on). It knows nothing of gRPC.
//!
//! The file passes 600 lines only by its unit tests; the code before them reads in one sitting.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tracing::{Instrument, debug, info_span, warn};

use crate::clock::Clock;

mod fill;
mod reroute;
use crate::config::{HoldSettings, Settings, SourcingSettings};
use crate::domain::{Order, Plan, Rules, StrategyKind};
use crate::error::Error;
use crate::lookahead::Prices;
use crate::sourcing::pool::SolvePool;
use crate::sourcing::{Admitted, Problem, Strategies};
use crate::store::{
    Allocation, HoldRequest, Reservation, ReservationState, ReserveOutcome, StockLevel, StockStore,
    StockUpdate, StoreError, UpdateResult, WaitingEntry,
};
pub use fill::{FillLease, FillReport};
pub use reroute::{RerouteCall, Rerouted};

/// The skus with units waiting of a segment whose priority is as good as `segment`'s or
/// better.
fn waiting_ahead(
    rules: &Rules,
    segment: &str,
    waiting: &HashMap<String, BTreeMap<String, u64>>,
) -> Vec<String> {
    let Some(mine) = rules.segments.get(segment).map(|s| s.priority) else {
        return Vec::new();
    };
    let mut skus: Vec<String> = waiting
        .iter()
        .filter(|(_, by_segment)| {
            by_segment.iter().any(|(s, units)| {
                *units > 0 && rules.segments.get(s).is_some_and(|s| s.priority <= mine)
            })
        })
        .map(|(sku, _)| sku.clone())
        .collect();
    skus.sort();
    skus
}

/// Stock of one sku at one node, as reported to callers.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAvailability {
    pub node_id: String,
    pub level: StockLevel,
    pub ats: u64,
    /// The node's low-stock threshold for the sku, when one applies.
    pub threshold: Option<u64>,
    /// Whether its ATS (safety stock deducted) is at or below the threshold.
    pub below_threshold: bool,
}

/// Stock of one sku across the network.
#[derive(Debug, Clone, PartialEq)]
pub struct SkuAvailability {
    pub sku: String,
    pub on_hand: u64,
    pub reserved: u64,
    pub safety_stock: u64,
    pub ats: u64,
    pub nodes: Vec<NodeAvailability>,
    /// Asked for a segment: the network threshold as it sees the sku, when one applies.
    pub threshold: Option<u64>,
    pub below_threshold: bool,
    /// Units waiting for supply of the sku, by segment (every segment, whichever is asked).
    pub waiting: Vec<(String, u64)>,
    /// Units expected by day, earliest first, at the nodes listed.
    pub inbound: Vec<(chrono::NaiveDate, u64)>,
}

/// The engine's own part of the settings: how it plans and how long it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    pub sourcing: SourcingSettings,
    pub holds: HoldSettings,
}

impl From<&Settings> for EngineSettings {
    fn from(settings: &Settings) -> Self {
        Self {
            sourcing: settings.sourcing.clone(),
            holds: settings.holds.clone(),
        }
    }
}

/// How many times a sku's alert states are looked at when its levels keep changing under
/// the look.
const ALERT_LOOKS: u32 = 3;

#[derive(Debug)]
pub struct Engine {
    /// Swapped whole when planners change the rules; each call works with one snapshot.
    rules: RwLock<Arc<Rules>>,
    settings: EngineSettings,
    store: Arc<dyn StockStore>,
    clock: Arc<dyn Clock>,
    strategies: Strategies,
    pool: SolvePool,
    /// Alert states as this replica last saw them.
    alerts: crate::events::alerts::Known,
    /// Look-ahead's newest price table as this replica has it.
    prices: RwLock<Arc<Prices>>,
    /// That table laid out for the network of the rules last planned with.
    laid: RwLock<Option<Arc<Laid>>>,
    /// The stock the last prices this replica computed were computed against.
    price_basis: parking_lot::Mutex<crate::lookahead::Basis>,
    /// Orders whose waiting units a fill found nothing for, and the on hand it found then.
    fill_tried: fill::Tried,
}

/// A reserve of an order not reserved before, as [`Engine::reserve`] hands it on.
struct New<'a> {
    order: &'a Order,
    admitted: Result<Admitted<'a>, Box<crate::domain::Refusal>>,
    kind: StrategyKind,
    ttl_ms: crate::clock::Millis,
    fingerprint: String,
    skus: Vec<String>,
    now: crate::clock::Millis,
}

/// Look-ahead's table as decisions read it: laid out for the network of `rules`.
#[derive(Debug)]
struct Laid {
    prices: Arc<Prices>,
    rules: Arc<Rules>,
    table: crate::sourcing::NodePrices,
}

const MILLIS_PER_DAY: i64 = 86_400_000;

/// How long a call waits for another request that is half-way through reserving the same
/// order before it answers UNAVAILABLE. A reserve takes milliseconds; one whose replica died
/// is rolled back after `store.redis.pending_timeout_ms`, longer than a caller should wait.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(2);

/// Orders whose lines × network nodes come to at most this are planned on the async worker
/// that asked: on the demo network (31 nodes) that is up to 3 lines, whose decisions take
/// 0.03 ms at the median and 0.3 ms at the 99th percentile (`benches/decision_percentiles`),
/// less than handing them to the solver pool and back costs under load. Larger orders go to
/// the pool, so no solve holds up the async workers.
const INLINE_PLAN_WORK: usize = 100;

/// Builds the admitted order's problem on `network` against `(stock, capacity)` (with each unit
/// priced by look-ahead's `prices`, where it is on), runs the
/// strategy and prices the plan, inside the `plan` span.
fn decide(
    rules: &Rules,
    strategies: &Strategies,
    admitted: &Admitted<'_>,
    kind: StrategyKind,
    ((stock, capacity), prices): (&(crate::store::StockView, HashMap<String, u64>), &Laid),
    today: chrono::NaiveDate,
    span: &tracing::Span,
) -> Result<Plan, Error> {
    let _plan = span.enter();
    let started = Instant::now();
    let mut problem = Problem::build(admitted, &rules.network, stock, capacity, today);
    if rules.lookahead.active() && !prices.table.is_empty() {
        if prices.prices.charged_whole {
            problem.charge_units(rules.lookahead.weight, &prices.table);
        } else {
            problem.price_units(rules.lookahead.weight, &prices.table);
        }
    }
    span.record("candidates", problem.candidates.len());
    let assignment = {
        let _solve = info_span!("solve").entered();
        let solving = Instant::now();
        let assignment = strategies.get(kind).assign(&problem);
        crate::metrics::solved(kind, assignment.status, solving.elapsed());
        assignment
    };
    let mut plan = problem.finish(kind, &assignment)?;
    plan.plan_micros = started.elapsed().as_micros() as u64;
    plan.rules_version = rules.version.clone();
    crate::metrics::planned(problem.candidates.len(), &plan);
    Ok(plan)
}

impl Engine {
    pub fn new(
        rules: Rules,
        settings: EngineSettings,
        store: Arc<dyn StockStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            rules: RwLock::new(Arc::new(rules)),
            strategies: Strategies::new(
                settings.sourcing.solver,
                std::time::Duration::from_millis(settings.sourcing.solve_budget_ms),
            ),
            pool: SolvePool::new(settings.sourcing.solver_threads),
            alerts: Default::default(),
            prices: Default::default(),
            laid: Default::default(),
            price_basis: Default::default(),
            fill_tried: Default::default(),
            settings,
            store,
            clock,
        }
    }

    /// The rules in force now. Calls already running keep the snapshot they started with.
    pub fn rules(&self) -> Arc<Rules> {
        self.rules.read().clone()
    }

    /// Puts new rules in force for every call that starts from now on.
    pub fn replace_rules(&self, rules: Rules) {
        crate::metrics::rules_in_force(&rules.version);
        *self.rules.write() = Arc::new(rules);
    }

    /// Look-ahead's price table in use (version 0 and no prices before the first).
    pub fn prices(&self) -> Arc<Prices> {
        self.prices.read().clone()
    }

    /// The table in use laid out for `rules`' network: made once per table and rules.
    fn laid_prices(&self, rules: &Arc<Rules>) -> Arc<Laid> {
        let prices = self.prices();
        if let Some(laid) = &*self.laid.read()
            && Arc::ptr_eq(&laid.prices, &prices)
            && Arc::ptr_eq(&laid.rules, rules)
        {
            return laid.clone();
        }
        let laid = Arc::new(Laid {
            table: crate::sourcing::NodePrices::new(&prices.by_sku, &rules.network),
            prices,
            rules: rules.clone(),
        });
        *self.laid.write() = Some(laid.clone());
        laid
    }

    /// Computes look-ahead's prices from the demand learned and the stock now, publishes them
    /// in the store for every replica, and uses them here: one replica at a time does this
    /// (see `server::lookahead`), the replay on its own clock.
    pub async fn refresh_prices(&self) -> Result<Arc<Prices>, Error> {
        let rules = self.rules();
        let settings = &rules.lookahead;
        let now = self.clock.now_millis();
        let started = Instant::now();
        let window_ms = settings.window_secs as crate::clock::Millis * 1000;
        let demand = self.store.read_demand(now, window_ms).await?;
        let mut skus: Vec<String> = demand.units.keys().map(|k| k.sku.clone()).collect();
        skus.sort();
        skus.dedup();
        let stock = self.store.read_stock(&skus, now).await?;
        let mut prices = if settings.calibration_rounds == 0 {
            Prices::compute(
                &rules.network,
                &rules.segments,
                &stock,
                &demand,
                settings,
                now,
            )
        } else {
            // the optimiser plans the horizon's orders many times over: off the runtime
            let (rules, stock, strategies, today) = (
                rules.clone(),
                stock.clone(),
                self.strategies.clone(),
                self.today(),
            );
            tokio::task::spawn_blocking(move || {
                Prices::calibrated(
                    &rules.network,
                    &rules.segments,
                    &stock,
                    &demand,
                    &rules.lookahead,
                    now,
                    &strategies,
                    today,
                )
            })
            .await
            .map_err(|e| Error::Internal(format!("calibrating look-ahead's prices: {e}")))?
        };
        prices.version = self.store.save_prices(&prices).await?;
        crate::metrics::prices_refreshed(&prices, started.elapsed());
        *self.price_basis.lock() = stock
            .iter()
            .map(|(sku, nodes)| {
                let ats = nodes
                    .iter()
                    .map(|(node, level)| (node.clone(), level.ats(false)))
                    .collect();
                (sku.clone(), ats)
            })
            .collect();
        let prices = Arc::new(prices);
        *self.prices.write() = prices.clone();
        Ok(prices)
    }

    /// Whether `event` moved a node's ATS of a sku with demand `lookahead.refresh_on_change_units`
    /// or more from the stock this replica last computed prices against: time to compute them
    /// again.
    pub fn stock_moved(&self, event: &crate::events::Event) -> bool {
        let crate::events::Change::Stock(change) = &event.change else {
            return false;
        };
        let units = self.rules().lookahead.refresh_on_change_units;
        crate::lookahead::moved(
            &self.price_basis.lock(),
            &change.sku,
            &change.node_id,
            &change.level,
            units,
        )
    }

    /// Takes up the newest price table in the store, if it is not the one in use; whether it
    /// took one.
    pub async fn load_prices(&self) -> Result<bool, Error> {
        let known = self.prices.read().version;
        match self.store.read_prices(known).await? {
            Some(prices) => {
                crate::metrics::prices_in_use(&prices);
                *self.prices.write() = Arc::new(prices);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Counts what `order` asks for as look-ahead's demand, where look-ahead is on; a failure
    /// to count is logged, and the order goes on.
    async fn learn_demand(&self, rules: &Rules, order: &Order, now: crate::clock::Millis) {
        let settings = &rules.lookahead;
        if !settings.enabled {
            return;
        }
        let seen = crate::lookahead::Observed::order(order, settings.region_km);
        let window_ms = settings.window_secs as crate::clock::Millis * 1000;
        if let Err(e) = self.store.record_demand(&seen, now, window_ms).await {
            tracing::warn!(error = %e, order_id = %order.order_id, "demand not counted for look-ahead");
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// The day as the service's clock has it.
    pub fn today(&self) -> chrono::NaiveDate {
        self.clock.today()
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn store(&self) -> &Arc<dyn StockStore> {
        &self.store
    }

    /// Stock of these skus and the day's node capacity used, read at `now`.
    async fn read_state(
        &self,
        skus: &[String],
        now: crate::clock::Millis,
    ) -> Result<(crate::store::StockView, HashMap<String, u64>), Error> {
        Ok(self
            .store
            .read_state(skus, now.div_euclid(MILLIS_PER_DAY), now)
            .instrument(info_span!("store", op = "read_state"))
            .await?)
    }

    /// Plans the order admitted under `rules` against stock and capacity read at `now`: small
    /// orders on this worker, the rest on the solver pool.
    async fn plan(
        &self,
        rules: &Arc<Rules>,
        admitted: &Admitted<'_>,
        kind: StrategyKind,
        state: (crate::store::StockView, HashMap<String, u64>),
    ) -> Result<Plan, Error> {
        let today = self.clock.today();
        let prices = self.laid_prices(rules);
        let span = info_span!("plan", strategy = %kind, candidates = tracing::field::Empty);
        if admitted.order().lines.len() * rules.network.len() <= INLINE_PLAN_WORK {
            // as on the pool, a panic in a strategy fails this order, not the worker
            return std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decide(
                    rules,
                    &self.strategies,
                    admitted,
                    kind,
                    (&state, &prices),
                    today,
                    &span,
                )
            }))
            .unwrap_or_else(|_| Err(Error::Internal("planning this order failed".into())));
        }
        let rules = rules.clone();
        let strategies = self.strategies.clone();
        let admitted = admitted.clone().into_owned();
        self.pool
            .run(move || {
                decide(
                    &rules,
                    &strategies,
                    &admitted,
                    kind,
                    (&state, &prices),
                    today,
                    &span,
                )
            })
            .await?
    }

    /// A plan against current stock, holding nothing.
    pub async fn quote(&self, order: &Order, kind: Option<StrategyKind>) -> Result<Plan, Error> {
        let rules = self.rules();
        let admitted = Admitted::admit(order, &rules)?;
        let kind = kind.unwrap_or(self.settings.sourcing.default_strategy);
        let now = self.clock.now_millis();
        let state = self.read_state(&order.skus(), now).await?;
        let mut plan = self.plan(&rules, &admitted, kind, state).await?;
        self.promise(&rules, admitted.segment(), &mut plan).await?;
        Ok(plan)
    }

    /// Dates the plan's unfilled units when the segment backorders: for each line, the first
    /// inbound day whose expected units (at nodes the segment may use), counted in order of
    /// day, cover the line after the units already waiting for its sku ahead of it (of the
    /// same or a better priority) and the order's earlier lines of that sku.
    async fn promise(
        &self,
        rules: &Rules,
        segment: &crate::domain::SegmentRules,
        plan: &mut Plan,
    ) -> Result<(), Error> {
        if segment.unfilled != crate::domain::UnfilledPolicy::Backorder
            || plan.unfilled.iter().all(|u| u.quantity == 0)
        {
            return Ok(());
        }
        let mut skus: Vec<String> = plan.unfilled.iter().map(|u| u.sku.clone()).collect();
        skus.sort();
        skus.dedup();
        let (inbound, waiting) = tokio::join!(
            self.store.read_inbound(&skus),
            self.store.waiting_units(&skus)
        );
        let (inbound, waiting) = (inbound?, waiting?);
        let today = self.today();
        for sku in &skus {
            let expected: Vec<&crate::store::Inbound> = inbound
                .get(sku)
                .map(|list| {
                    list.iter()
                        .filter(|i| {
                            rules
                                .network
                                .get(&i.node_id)
                                .is_some_and(|n| n.enabled && segment.exclusion(n).is_none())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut ahead: u64 = waiting
                .get(sku)
                .into_iter()
                .flatten()
                .filter(|(name, _)| {
                    rules
                        .segments
                        .get(name)
                        .is_some_and(|s| s.priority <= segment.priority)
                })
                .map(|(_, units)| *units)
                .sum();
            for line in plan.unfilled.iter_mut().filter(|u| &u.sku == sku) {
                ahead += line.quantity;
                let mut covered = 0u64;
                line.promised = expected.iter().find_map(|i| {
                    covered += i.units;
                    (covered >= ahead).then_some(i.expected.max(today))
                });
            }
        }
        Ok(())
    }

    /// The hold TTL for a request: its own (bounded by config) or the default.
    fn hold_ttl_secs(&self, requested: Option<u32>) -> Result<u32, Error> {
        let h = &self.settings.holds;
        match requested {
            None => Ok(h.default_ttl_secs),
            Some(ttl) if (h.min_ttl_secs..=h.max_ttl_secs).contains(&ttl) => Ok(ttl),
            Some(ttl) => Err(Error::invalid(
                "hold_ttl_seconds",
                format!(
                    "{ttl} is outside the allowed {}..{} seconds",
                    h.min_ttl_secs, h.max_ttl_secs
                ),
            )),
        }
    }

    /// The reservation made earlier for this order id, or ALREADY_EXISTS if it was made for a
    /// different order.
    fn same_order(existing: Reservation, fingerprint: &str) -> Result<(Reservation, bool), Error> {
        if existing.fingerprint == fingerprint {
            Ok((existing, false))
        } else {
            Err(Error::AlreadyExists(format!(
                "order {:?} was reserved before with different contents",
                existing.order_id
            )))
        }
    }

    /// Plans the order and holds its stock; `true` when this call made the reservation.
    pub async fn reserve(
        &self,
        order: &Order,
        ttl_secs: Option<u32>,
        kind: Option<StrategyKind>,
    ) -> Result<(Reservation, bool), Error> {
        let rules = self.rules();
        // a malformed request is answered as such at once; a refusal only once it is known
        // that the order was not reserved before, as a repeated reserve is answered from its
        // reservation
        let admitted = match Admitted::admit(order, &rules) {
            Ok(admitted) => Ok(admitted),
            Err(Error::Refused(refusal)) => Err(refusal),
            Err(malformed) => return Err(malformed),
        };
        let ttl_ms = i64::from(self.hold_ttl_secs(ttl_secs)?) * 1000;
        let kind = kind.unwrap_or(self.settings.sourcing.default_strategy);
        let fingerprint = order.fingerprint();
        let skus = order.skus();
        // a repeated reserve is answered from its reservation; the state for planning is read
        // alongside, as most reserves are new
        let now = self.clock.now_millis();
        let (existing, state, waiting) = tokio::join!(
            self.store
                .get_reservation(&order.order_id, now)
                .instrument(info_span!("store", op = "get_reservation")),
            self.read_state(&skus, now),
            self.store
                .waiting_units(&skus)
                .instrument(info_span!("store", op = "waiting_units"))
        );
        if let Some(existing) = existing? {
            return Self::same_order(existing, &fingerprint);
        }
        // the order's demand is counted while it is planned and held, not before: the count
        // is a store call of its own, and nothing in the plan waits for it
        let new = New {
            order,
            admitted,
            kind,
            ttl_ms,
            fingerprint,
            skus,
            now,
        };
        let (_, reserved) = tokio::join!(
            self.learn_demand(&rules, order, now),
            self.reserve_new(&rules, new, state, waiting)
        );
        reserved
    }

    /// [`Engine::reserve`] of an order not reserved before, from the state read for it.
    async fn reserve_new(
        &self,
        rules: &Arc<Rules>,
        new: New<'_>,
        state: Result<(crate::store::StockView, HashMap<String, u64>), Error>,
        waiting: Result<HashMap<String, BTreeMap<String, u64>>, StoreError>,
    ) -> Result<(Reservation, bool), Error> {
        let New {
            order,
            admitted,
            kind,
            ttl_ms,
            fingerprint,
            skus,
            now,
        } = new;
        let admitted = admitted.map_err(Error::Refused)?;
        let state = state?;
        // units already waiting, of a priority as good or better, go first: supply they could
        // take is offered to them before this order is planned
        let ahead: Vec<String> = waiting_ahead(rules, &order.segment, &waiting?)
            .into_iter()
            .filter(|sku| {
                state
                    .0
                    .get(sku)
                    .is_some_and(|nodes| nodes.values().any(|l| l.ats(true) > 0))
            })
            .collect();
        let mut state = Some((state, now));
        if !ahead.is_empty() && self.settings.holds.fill_interval_ms > 0 {
            let before = fill::Ahead {
                priority: admitted.segment().priority,
            };
            let report = self.fill_waiting_ahead(&ahead, before).await?;
            if report.units_filled > 0 {
                state = None;
            }
        }
        let attempts = self.settings.sourcing.reserve_attempts;
        for attempt in 1..=attempts {
            let (state, now) = match state.take() {
                Some(read) => read,
                None => {
                    let now = self.clock.now_millis();
                    (self.read_state(&skus, now).await?, now)
                }
            };
            let mut plan = self.plan(rules, &admitted, kind, state).await?;
            self.promise(rules, admitted.segment(), &mut plan).await?;
            let capacity_limits = plan
                .shipments
                .iter()
                .filter_map(|s| rules.network.get(&s.node_id))
                .filter(|n| n.daily_capacity_units < u64::MAX)
                .map(|n| (n.id.clone(), n.daily_capacity_units))
                .collect();
            let allocations = Allocation::of_plan(&plan);
            let waiting = if admitted.segment().unfilled == crate::domain::UnfilledPolicy::Backorder
            {
                crate::store::WaitingUnits::of_plan(&plan, now)
            } else {
                Vec::new()
            };
            let request = HoldRequest {
                order_id: order.order_id.clone(),
                fingerprint: fingerprint.clone(),
                segment: order.segment.clone(),
                use_safety_stock: admitted.segment().use_safety_stock,
                plan,
                allocations,
                // set again when the hold is written
                expires_at: now + ttl_ms,
                capacity_day: now.div_euclid(MILLIS_PER_DAY),
                capacity_limits,
                closed: admitted.segment().closed(),
                order: Some(order.clone()),
                waiting,
            };
            if !request.waiting.is_empty() {
                // the index of waiting lines lists them before the reservation says they wait
                let entries = WaitingEntry::of(&order.order_id, &order.segment, &request.waiting);
                self.store.note_waiting(&entries).await?;
            }
            let outcome = self
                .after_in_flight(|at| {
                    // the hold's time runs from when it is written, not from when planning
                    // began (nor from before a wait for another reserve of the order)
                    let held_at = at.max(now);
                    let request = HoldRequest {
                        expires_at: held_at + ttl_ms,
                        ..request.clone()
                    };
                    self.store.reserve(request, held_at)
                })
                .instrument(info_span!("store", op = "reserve"))
                .await?;
            match outcome {
                ReserveOutcome::Created(r) => {
                    if !r.waiting.is_empty() {
                        // noted again once written: a filler may have dropped the first note
                        // while the reservation was being written
                        let entries = WaitingEntry::of(&r.order_id, &r.segment, &r.waiting);
                        if let Err(e) = self.store.note_waiting(&entries).await {
                            warn!(order_id = %r.order_id, error = %e, "waiting lines not noted again");
                        }
                    }
                    return Ok((self.current(r).await?, true));
                }
                ReserveOutcome::Existing(r) => return Self::same_order(r, &fingerprint),
                ReserveOutcome::Insufficient {
                    sku,
                    node_id,
                    wanted,
                    available,
                } => {
                    debug!(
                        order_id = %order.order_id, attempt, %sku, %node_id, wanted, available,
                        "stock moved under the plan; planning again"
                    );
                }
                ReserveOutcome::OverCapacity {
                    node_id,
                    wanted,
                    available,
                } => {
                    debug!(
                        order_id = %order.order_id, attempt, %node_id, wanted, available,
                        "node capacity moved under the plan; planning again"
                    );
                }
            }
        }
        Err(Error::Aborted(format!(
            "order {:?}: concurrent reservations kept taking the planned stock; gave up after {attempts} attempts",
            order.order_id
        )))
    }

    /// A reservation as it stands now: one whose hold ran out while the store was writing it
    /// (a store slower than a short TTL) is read again, so the answer says it expired rather
    /// than HELD with an expiry already past.
    async fn current(&self, r: Reservation) -> Result<Reservation, Error> {
        let now = self.clock.now_millis();
        if r.state != ReservationState::Held || r.expires_at.is_none_or(|at| at > now) {
            return Ok(r);
        }
        let order_id = r.order_id.clone();
        Ok(self
            .store
            .get_reservation(&order_id, now)
            .instrument(info_span!("store", op = "get_reservation"))
            .await?
            .unwrap_or(r))
    }

    /// Runs a store call, and again while another request is half-way through reserving the
    /// same order (a Redis Cluster reserve goes in steps), for up to [`IN_FLIGHT_WAIT`]: the
    /// caller then gets that request's outcome instead of UNAVAILABLE. Each try is told the
    /// time, so that a reserve abandoned by a replica that died is rolled back once due.
    async fn after_in_flight<T, F, Fut>(&self, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut(crate::clock::Millis) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let give_up = Instant::now() + IN_FLIGHT_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            match call(self.clock.now_millis()).await {
                Err(StoreError::InFlight(order_id)) if Instant::now() + pause < give_up => {
                    debug!(%order_id, "order is being changed by another request; waiting");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    pub async fn commit(&self, order_id: &str) -> Result<Reservation, Error> {
        Ok(self
            .after_in_flight(|now| self.store.commit(order_id, now))
            .instrument(info_span!("store", op = "commit"))
            .await?)
    }

    pub async fn release(&self, order_id: &str, line_ids: &[String]) -> Result<Reservation, Error> {
        Ok(self
            .after_in_flight(|now| self.store.release(order_id, line_ids, now))
            .instrument(info_span!("store", op = "release"))
            .await?)
    }

    pub async fn reservation(&self, order_id: &str) -> Result<Reservation, Error> {
        self.store
            .get_reservation(order_id, self.clock.now_millis())
            .instrument(info_span!("store", op = "get_reservation"))
            .await?
            .ok_or_else(|| Error::NotFound(format!("no reservation for order {order_id:?}")))
    }

    /// Applies well-formed feed updates; those naming a node outside the network are rejected
    /// here, the rest by the store's own rules. One result per update, in order.
    pub async fn apply_stock(&self, updates: Vec<StockUpdate>) -> Result<Vec<UpdateResult>, Error> {
        let rules = self.rules();
        let mut results: Vec<Option<UpdateResult>> = Vec::with_capacity(updates.len());
        let mut valid = Vec::with_capacity(updates.len());
        for u in updates {
            if rules.network.contains(&u.node_id) {
                results.push(None);
                valid.push(u);
            } else {
                results.push(Some(UpdateResult::Rejected(format!(
                    "node_id: {:?} is not in the network",
                    u.node_id
                ))));
            }
        }
        let mut applied = self
            .store
            .apply_updates(&valid, self.clock.now_millis())
            .instrument(info_span!("store", op = "apply_updates"))
            .await?
            .into_iter();
        let results: Vec<UpdateResult> = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    applied.next().unwrap_or_else(|| {
                        UpdateResult::Rejected("store returned no result".into())
                    })
                })
            })
            .collect();
        crate::metrics::feed(&results);
        Ok(results)
    }

    /// Stock of these skus across the network, or across what `segment` may use.
    pub async fn availability(
        &self,
        skus: &[String],
        segment: Option<&str>,
    ) -> Result<Vec<SkuAvailability>, Error> {
        let all_rules = self.rules();
        let rules = match segment {
            Some(s) => Some(all_rules.segments.get(s).ok_or_else(|| {
                Error::invalid(
                    "segment",
                    format!(
                        "unknown segment {s:?} (known: {})",
                        all_rules.segments.names().join(", ")
                    ),
                )
            })?),
            None => None,
        };
        let (view, waiting, inbound) = tokio::join!(
            self.store
                .read_stock(skus, self.clock.now_millis())
                .instrument(info_span!("store", op = "read_stock")),
            self.waiting_units(skus),
            self.store.read_inbound(skus)
        );
        let (view, mut waiting, inbound) = (view?, waiting?, inbound?);
        let mut out = Vec::with_capacity(skus.len());
        for sku in skus {
            let levels = view.get(sku).cloned().unwrap_or_default();
            let ordered: BTreeMap<&str, StockLevel> =
                levels.iter().map(|(n, l)| (n.as_str(), *l)).collect();
            let mut sku_out = SkuAvailability {
                sku: sku.clone(),
                on_hand: 0,
                reserved: 0,
                safety_stock: 0,
                ats: 0,
                nodes: Vec::new(),
                threshold: None,
                below_threshold: false,
                waiting: waiting
                    .remove(sku)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                inbound: Vec::new(),
            };
            let mut by_day: BTreeMap<chrono::NaiveDate, u64> = BTreeMap::new();
            for i in inbound.get(sku).into_iter().flatten() {
                let listed = all_rules.network.get(&i.node_id).is_some_and(|node| {
                    rules.is_none_or(|r| node.enabled && r.exclusion(node).is_none())
                });
                if listed {
                    let units = by_day.entry(i.expected).or_default();
                    *units = units.saturating_add(i.units);
                }
            }
            sku_out.inbound = by_day.into_iter().collect();
            for node in all_rules.network.nodes() {
                let Some(level) = ordered.get(node.id.as_str()) else {
                    continue;
                };
                let usable = node.enabled && rules.is_none_or(|r| r.exclusion(node).is_none());
                if rules.is_some() && !usable {
                    continue;
                }
                // asked for a segment: as it sees it, safety stock and protection included
                let ats = match rules {
                    _ if !usable => 0,
                    Some(r) => r.ats(level),
                    None => level.ats(false),
                };
                sku_out.on_hand = sku_out.on_hand.saturating_add(level.on_hand);
                sku_out.reserved = sku_out.reserved.saturating_add(level.reserved);
                sku_out.safety_stock = sku_out.safety_stock.saturating_add(level.safety_stock);
                sku_out.ats = sku_out.ats.saturating_add(ats);
                let threshold = all_rules.alerts.threshold_at(sku, node, Some(level));
                sku_out.nodes.push(NodeAvailability {
                    node_id: node.id.clone(),
                    level: *level,
                    ats,
                    threshold,
                    below_threshold: threshold
                        .is_some_and(|t| (if node.enabled { level.ats(false) } else { 0 }) <= t),
                });
            }
            if let Some(segment) = segment {
                sku_out.threshold = all_rules.alerts.network_threshold(sku, segment);
                sku_out.below_threshold = sku_out.threshold.is_some_and(|t| sku_out.ats <= t);
            }
            out.push(sku_out);
        }
        Ok(out)
    }

    /// Returns the stock of expired holds; how many expired.
    pub async fn expire_holds(&self) -> Result<u64, Error> {
        let expired = self.store.expire_holds(self.clock.now_millis()).await?;
        crate::metrics::holds_expired(expired);
        Ok(expired)
    }

    /// Looks at the alert states of these skus against their levels now, and reports every
    /// threshold crossed (once, whichever replica looks first); how many were reported.
    ///
    /// A sku whose levels change between the read and the look is read again, up to
    /// [`ALERT_LOOKS`] times; one still changing is left to the look its next change brings
    /// (every change names its skus in the log).
    pub async fn evaluate_alerts(&self, skus: &[String]) -> Result<u64, Error> {
        if skus.is_empty() {
            return Ok(0);
        }
        let rules = self.rules();
        let mut view = self
            .store
            .read_stored_levels(skus, self.clock.now_millis())
            .await?;
        let mut reported = 0;
        for sku in skus {
            let mut levels = view.remove(sku).unwrap_or_default();
            for look in 1..=ALERT_LOOKS {
                let checks = crate::events::alerts::assess(
                    sku,
                    &levels,
                    &rules.network,
                    &rules.segments,
                    &rules.alerts,
                );
                let checks = self.alerts.worth_asking(sku, checks);
                if checks.is_empty() {
                    break;
                }
                let now = self.clock.now_millis();
                match self.store.record_alerts(sku, &levels, &checks, now).await? {
                    Some(states) => {
                        self.alerts.learn(sku, &checks, &states);
                        for kind in states.iter().filter_map(|(_, k)| *k) {
                            crate::metrics::alert(kind);
                            reported += 1;
                        }
                        break;
                    }
                    None if look < ALERT_LOOKS => {
                        let sku = std::slice::from_ref(sku);
                        levels = self
                            .store
                            .read_stored_levels(sku, now)
                            .await?
                            .into_values()
                            .next()
                            .unwrap_or_default();
                    }
                    None => debug!(sku, "alert states left to the sku's next change"),
                }
            }
        }
        Ok(reported)
    }

    /// Drops events past the log's retention age; how many the log keeps.
    pub async fn trim_events(&self) -> Result<u64, Error> {
        let kept = self.store.trim_events(self.clock.now_millis()).await?;
        crate::metrics::event_log_length(kept);
        Ok(kept)
    }

    /// Holds not yet committed, released or expired, across every replica.
    pub async fn active_holds(&self) -> Result<u64, Error> {
        Ok(self.store.active_holds(self.clock.now_millis()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{Config, ConfigSource, StockSeed};
    use crate::domain::{DeliveryMode, NodeKind, RefusalKind, Segments};
    use crate::store::MemoryStore;

    const NOON: crate::clock::Millis = 1_795_435_200_000; // 2026-11-23T12:00:00Z

    /// The demo config, with five units of T-1 at the Madrid store.
    fn engine() -> Engine {
        let config = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
        let stock = [StockSeed {
            sku: "T-1".into(),
            node: "st-madrid".into(),
            on_hand: 5,
            safety_stock: 0,
        }];
        engine_of(&config, &stock, ManualClock::new(NOON))
    }

    /// An engine of `config` on the memory store with `stock`, on `clock`.
    fn engine_of(config: &Config, stock: &[StockSeed], clock: ManualClock) -> Engine {
        Engine::new(
            config.rules(),
            (&config.settings).into(),
            Arc::new(MemoryStore::with_stock(stock)),
            Arc::new(clock),
        )
    }

    fn pickup(order_id: &str, segment: &str) -> Order {
        let mut o = crate::sourcing::tests::order(&[("1", "T-1", 1, None)]);
        o.order_id = order_id.into();
        o.segment = segment.into();
        o.delivery = DeliveryMode::Pickup {
            node_id: "st-madrid".into(),
        };
        o
    }

    fn refusal_kind(e: Error) -> RefusalKind {
        match e {
            Error::Refused(r) => r.kind,
            other => panic!("{other:?}"),
        }
    }

    fn ship(order_id: &str, segment: &str, sku: &str, units: u64) -> Order {
        let mut o = crate::sourcing::tests::order(&[("1", sku, units, None)]);
        o.order_id = order_id.into();
        o.segment = segment.into();
        o
    }

    fn feed(sku: &str, node: &str, sequence: u64, on_hand: u64) -> StockUpdate {
        StockUpdate {
            node_id: node.into(),
            sku: sku.into(),
            sequence,
            kind: crate::store::UpdateKind::Snapshot {
                on_hand,
                safety_stock: None,
                reorder_point: Default::default(),
            },
        }
    }

    fn units(r: &Reservation) -> (u64, u64) {
        (
            r.allocations.iter().map(Allocation::outstanding).sum(),
            r.waiting.iter().map(|w| w.units).sum(),
        )
    }

    #[tokio::test]
    async fn prices_in_use_follow_the_network_of_the_rules_in_force() {
        let mut config = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
        config.lookahead.enabled = true;
        let stock = ["wh-getafe", "wh-zaragoza"].map(|node| StockSeed {
            sku: "T-1".into(),
            node: node.into(),
            on_hand: 5,
            safety_stock: 0,
        });
        let engine = engine_of(&config, &stock, ManualClock::new(NOON));
        async fn shipped_from(engine: &Engine) -> String {
            let order = ship("q", "standard", "T-1", 1);
            let plan = engine.quote(&order, None).await.unwrap();
            plan.shipments[0].node_id.clone()
        }
        // a Madrid order ships from Getafe, nearest
        assert_eq!(shipped_from(&engine).await, "wh-getafe");
        // Getafe's units priced far above what Zaragoza costs more: it ships from Zaragoza
        *engine.prices.write() = Arc::new(Prices {
            version: 1,
            by_sku: [("T-1".to_owned(), [("wh-getafe".to_owned(), 500.0)].into())].into(),
            charged_whole: true,
            ..Prices::default()
        });
        assert_eq!(shipped_from(&engine).await, "wh-zaragoza");
        // new rules whose network has a node before all others in id order: the same price
        // still falls on Getafe, not on whichever node now sits where Getafe sat
        let mut nodes = config.network.nodes().to_vec();
        let mut first = nodes[0].clone();
        first.id = "aa-first".into();
        nodes.push(first);
        config.network = crate::domain::Network::new(config.network.currency.clone(), nodes);
        engine.replace_rules(config.rules());
        assert_eq!(shipped_from(&engine).await, "wh-zaragoza");
        // and a newer table is taken up at once: Getafe unpriced again
        *engine.prices.write() = Arc::new(Prices {
            version: 2,
            ..Prices::default()
        });
        assert_eq!(shipped_from(&engine).await, "wh-getafe");
    }

    #[tokio::test]
    async fn holds_and_releases_do_not_move_stock_for_look_ahead_and_feed_updates_do() {
        let mut config = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
        config.lookahead.enabled = true;
        config.lookahead.refresh_on_change_units = 10;
        let stock = [StockSeed {
            sku: "T-1".into(),
            node: "wh-getafe".into(),
            on_hand: 50,
            safety_stock: 0,
        }];
        let engine = engine_of(&config, &stock, ManualClock::new(NOON));
        // demand for T-1 learned, prices computed against Getafe's 50
        let order = ship("learn", "standard", "T-1", 1);
        engine.reserve(&order, None, None).await.unwrap();
        engine.release("learn", &[]).await.unwrap();
        engine.refresh_prices().await.unwrap();
        let after = engine.store.read_events(None, 1_000).await.unwrap().last;
        // 12 units held, then given back: Getafe's ATS moved 12 and back, by holds alone
        let (held, _) = engine
            .reserve(&ship("big", "standard", "T-1", 12), None, None)
            .await
            .unwrap();
        assert_eq!(units(&held), (12, 0));
        engine.release("big", &[]).await.unwrap();
        let page = engine.store.read_events(after, 1_000).await.unwrap();
        assert!(page.events.len() >= 2, "{:?}", page.events);
        assert!(
            page.events.iter().all(|e| !engine.stock_moved(e)),
            "{:?}",
            page.events
        );
        // a feed update of 12 does move it; one of 9 does not
        engine
            .apply_stock(vec![feed("T-1", "wh-getafe", 1, 41)])
            .await
            .unwrap();
        engine
            .apply_stock(vec![feed("T-1", "wh-getafe", 2, 62)])
            .await
            .unwrap();
        let page = engine.store.read_events(page.last, 1_000).await.unwrap();
        let moved: Vec<bool> = page
            .events
            .iter()
            .filter(|e| e.kind == crate::events::EventKind::StockChanged)
            .map(|e| engine.stock_moved(e))
            .collect();
        assert_eq!(moved, [false, true]);
    }

    #[tokio::test]
    async fn a_checkout_leaves_supply_to_the_units_waiting_ahead_of_it() {
        let engine = engine();
        // a standard order waits for 2 units of W-1; nothing fills it in the background here
        let (first, _) = engine
            .reserve(&ship("first", "standard", "W-1", 2), None, None)
            .await
            .unwrap();
        assert_eq!(units(&first), (0, 2));
        engine
            .apply_stock(vec![feed("W-1", "wh-getafe", 1, 3)])
            .await
            .unwrap();
        // a later standard order for 2: the waiting order takes its 2 first, 1 is left
        let (later, _) = engine
            .reserve(&ship("later", "standard", "W-1", 2), None, None)
            .await
            .unwrap();
        assert_eq!(units(&later), (1, 1));
        assert_eq!(units(&engine.reservation("first").await.unwrap()), (2, 0));
        // a vip order is not behind standard's waiting units: it takes what it finds
        engine
            .apply_stock(vec![feed("W-1", "wh-getafe", 2, 5)])
            .await
            .unwrap();
        let (vip, _) = engine
            .reserve(&ship("vip", "vip", "W-1", 2), None, None)
            .await
            .unwrap();
        assert_eq!(units(&vip), (2, 0));
        assert_eq!(units(&engine.reservation("later").await.unwrap()), (1, 1));
    }

    #[tokio::test]
    async fn a_checkout_fills_only_the_units_waiting_ahead_of_it_and_once_per_supply() {
        let mut config = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
        // marketplace backorders too, behind standard
        let segments: Vec<_> = config
            .segments
            .names()
            .into_iter()
            .map(|n| {
                let mut s = config.segments.get(&n).unwrap().clone();
                if n == "marketplace" {
                    s.unfilled = crate::domain::UnfilledPolicy::Backorder;
                }
                s
            })
            .collect();
        config.segments = Segments::new(segments);
        let engine = engine_of(&config, &[], ManualClock::new(NOON));
        let (m, _) = engine
            .reserve(&ship("m", "marketplace", "W-2", 2), None, None)
            .await
            .unwrap();
        assert_eq!(units(&m), (0, 2));
        let (w, _) = engine
            .reserve(&ship("w", "standard", "W-2", 1), None, None)
            .await
            .unwrap();
        assert_eq!(units(&w), (0, 1));
        engine
            .apply_stock(vec![feed("W-2", "wh-zaragoza", 1, 2)])
            .await
            .unwrap();
        // a standard checkout fills the standard unit waiting first, never marketplace's, which
        // it is ahead of: it takes what is left
        let (s, _) = engine
            .reserve(&ship("s", "standard", "W-2", 1), None, None)
            .await
            .unwrap();
        assert_eq!(units(&engine.reservation("w").await.unwrap()), (1, 0));
        assert_eq!(units(&s), (1, 0));
        assert_eq!(units(&engine.reservation("m").await.unwrap()), (0, 2));
        // a marketplace checkout is behind them: it fills them first when stock comes
        engine
            .apply_stock(vec![feed("W-2", "wh-zaragoza", 2, 4)])
            .await
            .unwrap();
        let (m2, _) = engine
            .reserve(&ship("m2", "marketplace", "W-2", 1), None, None)
            .await
            .unwrap();
        assert_eq!(units(&engine.reservation("m").await.unwrap()), (2, 0));
        assert_eq!(units(&m2), (0, 1));
        // stock marketplace may not use (the Lisbon DC): the fill finds nothing for m2, and
        // remembers it against that on hand, so checkouts pass it over until on hand changes
        assert!(!engine.fill_tried.knows("m2"));
        engine
            .apply_stock(vec![feed("W-2", "wh-amadora", 1, 3)])
            .await
            .unwrap();
        let (m3, _) = engine
            .reserve(&ship("m3", "marketplace", "W-2", 1), None, None)
            .await
            .unwrap();
        assert_eq!(units(&m3), (0, 1));
        assert_eq!(units(&engine.reservation("m2").await.unwrap()), (0, 1));
        assert!(engine.fill_tried.knows("m2"));
    }

    #[tokio::test]
    async fn units_planned_again_count_against_the_capacity_of_the_orders_day() {
        let mut config = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
        // Zaragoza ships 2 units a day
        let nodes: Vec<_> = config
            .network
            .nodes()
            .iter()
            .cloned()
            .map(|mut n| {
                if n.id == "wh-zaragoza" {
                    n.daily_capacity_units = 2;
                }
                n
            })
            .collect();
        config.network = crate::domain::Network::new("EUR".into(), nodes);
        let stock: Vec<StockSeed> = ["wh-zaragoza", "wh-sevilla", "wh-sabadell"]
            .iter()
            .map(|node| StockSeed {
                sku: "C-1".into(),
                node: (*node).into(),
                on_hand: 10,
                safety_stock: 0,
            })
            .collect();
        let clock = ManualClock::new(NOON);
        let engine = engine_of(&config, &stock, clock.clone());
        // the first order takes Zaragoza's day; the second goes to Sevilla
        let (a, _) = engine
            .reserve(&ship("a", "standard", "C-1", 2), None, None)
            .await
            .unwrap();
        assert_eq!(a.allocations[0].node_id, "wh-zaragoza");
        let (b, _) = engine
            .reserve(&ship("b", "standard", "C-1", 1), None, None)
            .await
            .unwrap();
        assert_eq!(b.allocations[0].node_id, "wh-sevilla");
        engine.commit("a").await.unwrap();
        engine.commit("b").await.unwrap();
        // a day later Sevilla turns b down: its unit still counts on b's day, when Zaragoza
        // had no capacity left
        clock.advance_secs(86_400);
        let rerouted = engine
            .reroute(&RerouteCall {
                order_id: "b".into(),
                node_id: "wh-sevilla".into(),
                lines: Vec::new(),
                reason: crate::store::RerouteReason::StoreRejected,
                reroute_id: "b-r".into(),
            })
            .await
            .unwrap();
        let to: Vec<&str> = rerouted
            .reservation
            .allocations
            .iter()
            .filter(|a| a.outstanding() > 0)
            .map(|a| a.node_id.as_str())
            .collect();
        assert_eq!(to, ["wh-sabadell"]);
    }

    #[tokio::test]
    async fn a_malformed_reserve_is_invalid_before_its_pickup_store_is_refused() {
        let engine = engine();
        // marketplace ships from no stores
        let o = pickup("o-1", "marketplace");
        let kind = refusal_kind(engine.quote(&o, None).await.unwrap_err());
        assert_eq!(kind, RefusalKind::PickupStoreNotAllowed);
        let kind = refusal_kind(engine.reserve(&o, None, None).await.unwrap_err());
        assert_eq!(kind, RefusalKind::PickupStoreNotAllowed);
        let too_long = engine.settings().holds.max_ttl_secs + 1;
        let e = engine.reserve(&o, Some(too_long), None).await.unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument { field, .. } if field == "hold_ttl_seconds"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_repeated_reserve_is_answered_from_its_reservation_before_any_refusal() {
        let engine = engine();
        let o = pickup("o-1", "standard");
        let (first, created) = engine.reserve(&o, None, None).await.unwrap();
        assert!(created);
        // the rules change: standard may no longer use stores
        let mut rules = (*engine.rules()).clone();
        let segments = rules.segments.names().into_iter().map(|name| {
            let mut s = rules.segments.get(&name).unwrap().clone();
            if name == "standard" {
                s.node_kinds.remove(&NodeKind::Store);
            }
            s
        });
        rules.segments = Segments::new(segments.collect::<Vec<_>>());
        engine.replace_rules(rules);
        let (again, created) = engine.reserve(&o, None, None).await.unwrap();
        assert_eq!((again.order_id, created), (first.order_id, false));
        let kind = refusal_kind(
            engine
                .reserve(&pickup("o-2", "standard"), None, None)
                .await
                .unwrap_err(),
        );
        assert_eq!(kind, RefusalKind::PickupStoreNotAllowed);
    }
}
