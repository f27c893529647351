//! Replaying: each order of a file reserved and committed through the real engine, in file
//! order, on a store of its own, and what became of it.

use std::sync::Arc;

use crate::clock::{ManualClock, Millis};
use crate::config::{Config, StockSeed};
use crate::domain::{Plan, Refusal, RefusalKind, StrategyKind};
use crate::engine::Engine;
use crate::error::Error;
use crate::store::MemoryStore;

use super::orders::{EventKind, OrderFileError, OrdersFile, ReplayEvent, file_field};
use super::totals::Summary;

/// How a replay is made.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The strategy for every order; `None` for the config's `sourcing.default_strategy`.
    pub strategy: Option<StrategyKind>,
    /// The clock until the first order that says when it was placed; orders that do not say
    /// are placed when the order before them was.
    pub start: Millis,
}

/// What became of one order.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Held and committed as planned (the plan may leave units unfilled, where the segment
    /// allows it).
    Planned(Plan),
    /// No plan satisfies the segment's rules: which rule refused the order and why, counted
    /// by its kind (named by [`refusal_reason`]); its `Display` is the engine's sentence.
    Refused(Refusal),
}

/// One order's decision in a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub line: usize,
    pub order_id: String,
    pub segment: String,
    pub units: u64,
    /// The segment's cost per unfilled unit: what each unit of a refused order is charged.
    pub unfilled_penalty: f64,
    pub outcome: Outcome,
}

impl Decision {
    /// Units per (line, node), sorted; `None` when refused. Equal for two decisions that ship
    /// the same units from the same nodes.
    pub(super) fn allocation(&self) -> Option<Vec<(&str, &str, u64)>> {
        let Outcome::Planned(plan) = &self.outcome else {
            return None;
        };
        let mut units: Vec<(&str, &str, u64)> = plan
            .shipments
            .iter()
            .flat_map(|s| {
                s.lines
                    .iter()
                    .map(|l| (l.line_id.as_str(), s.node_id.as_str(), l.quantity))
            })
            .collect();
        units.sort_unstable();
        Some(units)
    }

    /// For people: units per node (`wh-getafe 2 + st-madrid 1`), the units left unfilled, or
    /// why the order was refused.
    pub fn describe(&self) -> String {
        match &self.outcome {
            Outcome::Refused(refusal) => format!("refused ({})", refusal_reason(refusal.kind)),
            Outcome::Planned(plan) => {
                let mut parts: Vec<String> = plan
                    .shipments
                    .iter()
                    .map(|s| {
                        let units: u64 = s.lines.iter().map(|l| l.quantity).sum();
                        format!("{} {units}", s.node_id)
                    })
                    .collect();
                let unfilled = plan.unfilled_units();
                if unfilled > 0 {
                    parts.push(format!("{unfilled} unfilled"));
                }
                parts.join(" + ")
            }
        }
    }

    /// As [`Decision::describe`], with the units of each line: for two decisions that ship as
    /// many units from the same nodes, but of other lines.
    pub(super) fn describe_lines(&self) -> String {
        let Outcome::Planned(plan) = &self.outcome else {
            return self.describe();
        };
        let mut parts: Vec<String> = plan
            .shipments
            .iter()
            .map(|s| {
                let lines: Vec<String> = s
                    .lines
                    .iter()
                    .map(|l| format!("line {} x{}", l.line_id, l.quantity))
                    .collect();
                format!("{} ({})", s.node_id, lines.join(", "))
            })
            .collect();
        for u in &plan.unfilled {
            parts.push(format!("line {} x{} unfilled", u.line_id, u.quantity));
        }
        parts.join(" + ")
    }

    /// Cost to serve: the plan's total (its unfilled units at the segment's penalty), or for a
    /// refused order every unit at that penalty, so that refusing an order never costs less
    /// than leaving its units unfilled.
    pub fn cost(&self) -> f64 {
        match &self.outcome {
            Outcome::Planned(plan) => plan.total_cost,
            Outcome::Refused(_) => self.refusal_penalty(),
        }
    }

    /// What the order's units cost refused: none for a planned order.
    pub fn refusal_penalty(&self) -> f64 {
        match &self.outcome {
            Outcome::Planned(_) => 0.0,
            Outcome::Refused(_) => self.units as f64 * self.unfilled_penalty,
        }
    }
}

/// A replay of a file of orders against one config.
#[derive(Debug, Clone)]
pub struct Run {
    pub strategy: StrategyKind,
    /// One per order, in file order.
    pub decisions: Vec<Decision>,
    /// Stock events and rejections replayed between the orders.
    pub events: usize,
    pub summary: Summary,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The config refuses an order as malformed, as the API would (an unknown segment or
    /// pickup store).
    #[error(transparent)]
    Order(#[from] OrderFileError),
    /// The engine failed for a reason that is not the order's.
    #[error("{file}:{line}: {source}")]
    Engine {
        file: String,
        line: usize,
        #[source]
        source: Error,
    },
}

/// Work the service does every so often, on the replay's clock: due once `every` of replayed
/// time has passed since it was last done (never where `every` is `None`).
struct Every {
    every: Option<Millis>,
    last: Option<Millis>,
}

impl Every {
    fn due(&mut self, now: Millis) -> bool {
        let due = self
            .every
            .is_some_and(|every| self.last.is_none_or(|last| now - last >= every));
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// The service's periodic work, on the replay's clock: the sweep of units waiting every
/// `holds.fill_interval_ms` (none when filling is off), and look-ahead's prices every
/// `lookahead.refresh_secs`, from the demand of the orders replayed so far (none when
/// look-ahead is off).
struct Periodic {
    sweeps: Every,
    refreshes: Every,
}

impl Periodic {
    async fn when_due(
        &mut self,
        engine: &Engine,
        name: &str,
        line: usize,
    ) -> Result<(), ReplayError> {
        let now = engine.clock().now_millis();
        let failed = |source| engine_error(name, line, source);
        if self.sweeps.due(now) {
            engine.fill_waiting(&[]).await.map_err(failed)?;
        }
        if self.refreshes.due(now) {
            engine.refresh_prices().await.map_err(failed)?;
        }
        Ok(())
    }
}

fn engine_error(file: &str, line: usize, source: Error) -> ReplayError {
    ReplayError::Engine {
        file: file.to_owned(),
        line,
        source,
    }
}

/// An event of the file the engine refuses, named by its line (and field, where the API names
/// one).
fn event_error(file: &str, line: usize, e: Error) -> ReplayError {
    let (field, problem) = match e {
        Error::InvalidArgument { field, problem } => (field, problem),
        other @ (Error::NotFound(_) | Error::FailedPrecondition(_) | Error::AlreadyExists(_)) => {
            (String::new(), other.to_string())
        }
        other => return engine_error(file, line, other),
    };
    ReplayError::Order(OrderFileError {
        file: file.to_owned(),
        line,
        field,
        problem,
    })
}

/// A stock event's update rejected: the reason names the field first (`quantity: ...`).
fn rejected(file: &str, line: usize, reason: &str) -> ReplayError {
    let (field, problem) = reason
        .split_once(": ")
        .map_or((String::new(), reason.to_owned()), |(f, p)| {
            (f.to_owned(), p.to_owned())
        });
    ReplayError::Order(OrderFileError {
        file: file.to_owned(),
        line,
        field,
        problem,
    })
}

/// Makes a stock event or a rejection happen, then tries the units waiting for the skus it
/// touched, as the service's filler would.
async fn happen(
    engine: &Engine,
    name: &str,
    e: &ReplayEvent,
    sequence: &mut u64,
    fills: bool,
) -> Result<(), ReplayError> {
    let skus = match &e.kind {
        EventKind::Stock(u) => {
            *sequence += 1;
            let mut u = u.clone();
            u.sequence = *sequence;
            let sku = u.sku.clone();
            let update = crate::api::convert::stock_update(u, engine.today())
                .map_err(|reason| rejected(name, e.line, &reason))?;
            let results = engine
                .apply_stock(vec![update])
                .await
                .map_err(|source| engine_error(name, e.line, source))?;
            if let Some(crate::store::UpdateResult::Rejected(reason)) = results.first() {
                return Err(rejected(name, e.line, reason));
            }
            vec![sku]
        }
        EventKind::Reject(r) => {
            let mut r = r.clone();
            r.reroute_id = format!("replay-line-{}", e.line);
            let call =
                crate::api::convert::reroute(&r).map_err(|e2| event_error(name, e.line, e2))?;
            let done = engine
                .reroute(&call)
                .await
                .map_err(|e2| event_error(name, e.line, e2))?;
            let mut skus: Vec<String> = done
                .reservation
                .allocations
                .iter()
                .map(|a| a.sku.clone())
                .collect();
            skus.sort();
            skus.dedup();
            skus
        }
    };
    if fills {
        engine
            .fill_waiting(&skus)
            .await
            .map_err(|source| engine_error(name, e.line, source))?;
    }
    Ok(())
}

/// Replays `orders` in file order against `config`, starting from `stock`: each order is
/// reserved and committed exactly as the service does it, on a store of its own; stock events
/// and rejections happen between them where the file has them, and units waiting are filled
/// as the service fills them (at once for the skus an event touches, and on a sweep every
/// `holds.fill_interval_ms` of the replay's clock).
pub async fn run(
    config: &Config,
    stock: &[StockSeed],
    orders: &OrdersFile,
    options: &Options,
) -> Result<Run, ReplayError> {
    let clock = ManualClock::new(options.start);
    let rules = config.rules();
    let engine = Engine::new(
        rules.clone(),
        (&config.settings).into(),
        Arc::new(MemoryStore::with_stock(stock)),
        Arc::new(clock.clone()),
    );
    let strategy = options
        .strategy
        .unwrap_or(config.settings.sourcing.default_strategy);
    let mut decisions = Vec::with_capacity(orders.orders.len());
    let mut summary = Summary::default();
    let every = config.settings.holds.fill_interval_ms;
    let fills = every > 0;
    let mut periodic = Periodic {
        sweeps: Every {
            every: fills.then_some(every as Millis),
            last: Some(options.start),
        },
        refreshes: Every {
            every: rules
                .lookahead
                .enabled
                .then_some(rules.lookahead.refresh_secs as Millis * 1000),
            last: None,
        },
    };
    let mut sequence = 0u64;
    let mut events = orders.events.iter().peekable();
    for (i, o) in orders.orders.iter().enumerate() {
        while let Some(e) = events.next_if(|e| e.after <= i) {
            if let Some(at) = e.at {
                clock.set(at);
            }
            periodic.when_due(&engine, &orders.name, e.line).await?;
            happen(&engine, &orders.name, e, &mut sequence, fills).await?;
        }
        if let Some(at) = o.placed_at {
            clock.set(at);
        }
        periodic.when_due(&engine, &orders.name, o.line).await?;
        let failed = |source: Error| match source {
            Error::InvalidArgument { field, problem } => ReplayError::Order(OrderFileError {
                file: orders.name.clone(),
                line: o.line,
                field: file_field(&field),
                problem,
            }),
            source => ReplayError::Engine {
                file: orders.name.clone(),
                line: o.line,
                source,
            },
        };
        let outcome = match engine.reserve(&o.order, None, Some(strategy)).await {
            Ok((reservation, _)) => {
                engine.commit(&o.order.order_id).await.map_err(failed)?;
                Outcome::Planned(reservation.plan)
            }
            Err(Error::Refused(refusal)) => Outcome::Refused(*refusal),
            Err(e) => return Err(failed(e)),
        };
        let decision = Decision {
            line: o.line,
            order_id: o.order.order_id.clone(),
            segment: o.order.segment.clone(),
            units: o.order.lines.iter().map(|l| l.quantity).sum(),
            unfilled_penalty: rules
                .segments
                .get(&o.order.segment)
                .map_or(0.0, |s| s.unfilled_penalty),
            outcome,
        };
        summary.add(&decision);
        decisions.push(decision);
    }
    for e in events {
        if let Some(at) = e.at {
            clock.set(at);
        }
        periodic.when_due(&engine, &orders.name, e.line).await?;
        happen(&engine, &orders.name, e, &mut sequence, fills).await?;
    }
    // what became of the units that waited, as the orders stand at the end
    for d in &decisions {
        if matches!(d.outcome, Outcome::Planned(_)) {
            let r = engine
                .reservation(&d.order_id)
                .await
                .map_err(|source| engine_error(&orders.name, d.line, source))?;
            summary.add_backorders(&d.segment, &r);
        }
    }
    Ok(Run {
        events: orders.events.len(),
        strategy,
        decisions,
        summary,
    })
}

/// A refusal's kind in a few words, as the report names it: the rule that refused, and why.
pub fn refusal_reason(kind: RefusalKind) -> &'static str {
    match kind {
        RefusalKind::PickupStoreNotAllowed => "pickup store not allowed to the segment",
        RefusalKind::NotEnoughStock => "no partial plans: not enough stock",
        RefusalKind::StockTooSpread => {
            "no partial plans: stock too spread for the shipment limit, capacity or kits"
        }
        RefusalKind::ShipCompleteNotEnoughStock => "ship-complete: not enough stock",
        RefusalKind::ShipCompleteTooSpread => {
            "ship-complete: stock too spread for the shipment limit, capacity or kits"
        }
        RefusalKind::NoPlanFound(StrategyKind::Nearest) => {
            "no partial plans: nearest found no plan within the limit"
        }
        RefusalKind::NoPlanFound(StrategyKind::Priority) => {
            "no partial plans: priority found no plan within the limit"
        }
        RefusalKind::NoPlanFound(StrategyKind::Optimal) => {
            "no partial plans: optimal found no plan within its solve budget"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::domain::DeliveryMode;
    use crate::replay::fixtures::{NOON, order, plan, replay, tiny};

    #[tokio::test]
    async fn the_time_an_order_was_placed_sets_its_capacity_day() {
        // wh-a ships 2 units a day; wh-b has nothing
        let config = tiny(&[("wh-a", 10)], 2);
        let text = [
            r#"{"order_id":"o1","segment":"strict","destination":{"location":{"lat":40.4165,"lon":-3.70256},"country":"ES"},"lines":[{"line_id":"1","sku":"X","quantity":2}],"placed_at":"2026-11-23T09:00:00Z"}"#,
            r#"{"order_id":"o2","segment":"strict","destination":{"location":{"lat":40.4165,"lon":-3.70256},"country":"ES"},"lines":[{"line_id":"1","sku":"X","quantity":1}],"placed_at":"2026-11-23T17:00:00+01:00"}"#,
            r#"{"order_id":"o3","segment":"strict","destination":{"location":{"lat":40.4165,"lon":-3.70256},"country":"ES"},"lines":[{"line_id":"1","sku":"X","quantity":2}],"placed_at":"2026-11-24T08:00:00Z"}"#,
            r#"{"order_id":"o4","segment":"strict","destination":{"location":{"lat":40.4165,"lon":-3.70256},"country":"ES"},"lines":[{"line_id":"1","sku":"X","quantity":1}]}"#,
        ]
        .join("\n");
        let orders = OrdersFile::parse("orders.jsonl", &text, 10).unwrap();
        let options = Options {
            strategy: None,
            start: orders.first_placed_at().unwrap(),
        };
        let run = run(&config, &config.stock, &orders, &options)
            .await
            .unwrap();
        let d = &run.decisions;
        assert_eq!(d[0].describe(), "wh-a 2");
        // the same day's capacity is used up; the next day's is not
        assert!(matches!(d[1].outcome, Outcome::Refused(_)), "{:?}", d[1]);
        assert_eq!(d[2].describe(), "wh-a 2");
        let (first, next) = (plan(&d[0]), plan(&d[2]));
        assert_eq!(
            next.shipments[0].estimated_delivery - first.shipments[0].estimated_delivery,
            chrono::TimeDelta::days(1)
        );
        // an order without a time is placed when the one before it was: that day is full
        assert!(matches!(d[3].outcome, Outcome::Refused(_)), "{:?}", d[3]);
    }

    #[tokio::test]
    async fn refusals_are_counted_by_the_rule_that_refused() {
        let config = tiny(&[("wh-a", 3), ("wh-b", 2), ("st-c", 5)], 1000);
        let mut complete = order("o1", "strict", 4);
        complete.ship_complete = true;
        let mut pickup = order("o2", "strict", 1);
        pickup.delivery = DeliveryMode::Pickup {
            node_id: "st-c".into(),
        };
        let short = order("o3", "strict", 11);
        let run = replay(&config, vec![complete, pickup, short]).await;
        let kinds: Vec<Option<RefusalKind>> = run
            .decisions
            .iter()
            .map(|d| match &d.outcome {
                Outcome::Refused(refusal) => Some(refusal.kind),
                Outcome::Planned(_) => None,
            })
            .collect();
        assert_eq!(
            kinds,
            [
                Some(RefusalKind::ShipCompleteTooSpread),
                Some(RefusalKind::PickupStoreNotAllowed),
                Some(RefusalKind::NotEnoughStock),
            ]
        );
        let reasons: Vec<&str> = kinds.into_iter().flatten().map(refusal_reason).collect();
        assert_eq!(
            reasons,
            [
                "ship-complete: stock too spread for the shipment limit, capacity or kits",
                "pickup store not allowed to the segment",
                "no partial plans: not enough stock",
            ]
        );
        let described: Vec<String> = run.decisions.iter().map(|d| d.describe()).collect();
        assert_eq!(
            described[1],
            "refused (pickup store not allowed to the segment)"
        );
        assert_eq!(
            run.summary.all.refused_by_kind,
            BTreeMap::from([
                (RefusalKind::PickupStoreNotAllowed, 1),
                (RefusalKind::NotEnoughStock, 1),
                (RefusalKind::ShipCompleteTooSpread, 1),
            ])
        );
    }

    /// Look-ahead's world: X at Barcelona's DC (5) and, from 09:20, one unit at Madrid's;
    /// segment `local` ships within 100 km only, so a Madrid order of it can take Madrid's unit
    /// and nothing else. `relaxed` orders to Calatayud, between the two, cost a little less
    /// from Madrid.
    fn kept_for_later(lookahead: bool) -> Config {
        let mut config = tiny(&[("wh-a", 0), ("wh-b", 5)], 1000);
        let mut local = config.segments.get("strict").unwrap().clone();
        local.name = "local".into();
        local.max_distance_km = Some(100.0);
        let others: Vec<_> = ["strict", "relaxed"]
            .iter()
            .map(|n| config.segments.get(n).unwrap().clone())
            .collect();
        config.segments = crate::domain::Segments::new(others.into_iter().chain([local]));
        config.lookahead.enabled = lookahead;
        config
    }

    fn line(id: &str, segment: &str, (lat, lon): (f64, f64), at: &str) -> String {
        format!(
            r#"{{"order_id":"{id}","segment":"{segment}","destination":{{"location":{{"lat":{lat},"lon":{lon}}},"country":"ES"}},"lines":[{{"line_id":"1","sku":"X","quantity":1}}],"placed_at":"2026-11-23T{at}:00Z"}}"#
        )
    }

    const MADRID: (f64, f64) = (40.4165, -3.70256);
    const CALATAYUD: (f64, f64) = (41.3536, -1.6432);
    const MADRID_GETS_ONE: &str = r#"{"event":"stock","at":"2026-11-23T09:20:00Z","node_id":"wh-a","sku":"X","kind":"STOCK_UPDATE_KIND_DELTA","quantity":1}"#;

    async fn replayed(config: &Config, lines: &[String]) -> Run {
        let orders = OrdersFile::parse("orders.jsonl", &lines.join("\n"), 10).unwrap();
        let options = Options {
            strategy: None,
            start: orders.first_placed_at().unwrap(),
        };
        run(config, &config.stock, &orders, &options).await.unwrap()
    }

    /// Two local orders from Madrid find nothing within 100 km (their demand is learned: four
    /// an hour, which Barcelona's five can meet at a higher cost), Madrid's DC gets one unit,
    /// then Calatayud orders, then Madrid again.
    fn madrid_calatayud_madrid() -> Vec<String> {
        let mut lines: Vec<String> = (0..2)
            .map(|i| line(&format!("m{i}"), "local", MADRID, &format!("09:0{i}")))
            .collect();
        lines.push(MADRID_GETS_ONE.into());
        lines.push(line("cal", "relaxed", CALATAYUD, "09:30"));
        lines.push(line("m9", "local", MADRID, "09:40"));
        lines
    }

    #[tokio::test]
    async fn look_ahead_keeps_the_unit_a_later_order_can_get_nowhere_else() {
        let lines = madrid_calatayud_madrid();
        let off = replayed(&kept_for_later(false), &lines).await;
        let on = replayed(&kept_for_later(true), &lines).await;
        let by_id = |r: &Run, id: &str| {
            r.decisions
                .iter()
                .find(|d| d.order_id == id)
                .unwrap()
                .clone()
        };
        // without look-ahead Calatayud takes Madrid's unit, the cheapest, and Madrid's last
        // order is refused
        assert_eq!(by_id(&off, "cal").describe(), "wh-a 1");
        assert!(
            matches!(by_id(&off, "m9").outcome, Outcome::Refused(_)),
            "{:?}",
            by_id(&off, "m9")
        );
        // with it, Calatayud ships from Barcelona, its unit priced by Madrid's demand, and
        // Madrid's order gets the unit kept for it
        let cal = by_id(&on, "cal");
        assert_eq!(cal.describe(), "wh-b 1");
        let plan = plan(&cal);
        assert_eq!(plan.opportunity_cost, 0.0);
        let madrid = plan
            .unused_nodes
            .iter()
            .find(|u| u.node_id == "wh-a")
            .unwrap();
        assert!(
            madrid.detail.starts_with("kept for later demand: +"),
            "{madrid:?}"
        );
        assert_eq!(by_id(&on, "m9").describe(), "wh-a 1");
        // and the day costs less, refusals counted
        assert!(
            on.summary.all.cost < off.summary.all.cost,
            "{} vs {}",
            on.summary.all.cost,
            off.summary.all.cost
        );
        // the plan's cost to serve is what shipping costs, the price beside it
        assert!(plan.total_cost > plan_of(&off, "cal").total_cost);
    }

    #[tokio::test]
    async fn calibrated_look_ahead_keeps_the_unit_too_and_charges_it_whole() {
        let lines = madrid_calatayud_madrid();
        let mut config = kept_for_later(true);
        config.lookahead.calibration_rounds = 20;
        let on = replayed(&config, &lines).await;
        let off = replayed(&kept_for_later(false), &lines).await;
        // Calatayud ships from Barcelona, Madrid's unit kept for Madrid's last order
        assert_eq!(plan_of(&on, "cal").shipments[0].node_id, "wh-b");
        assert_eq!(plan_of(&on, "m9").shipments[0].node_id, "wh-a");
        // Madrid's order pays the unit's whole price beside its cost: it is the demand the
        // unit was kept for, and charged whole it is the price of the unit
        assert!(plan_of(&on, "m9").opportunity_cost > 0.0);
        assert!(on.summary.all.cost < off.summary.all.cost);
    }

    fn plan_of(r: &Run, id: &str) -> Plan {
        plan(r.decisions.iter().find(|d| d.order_id == id).unwrap()).clone()
    }

    #[tokio::test]
    async fn look_ahead_in_a_replay_learns_only_from_orders_already_replayed() {
        // Calatayud orders first: no demand is learned yet, so every price is zero and it
        // takes Madrid's unit as without look-ahead, though Madrid's orders follow in the file
        let mut lines = vec![MADRID_GETS_ONE.replace("09:20", "08:50")];
        lines.push(line("cal", "relaxed", CALATAYUD, "09:00"));
        lines.extend((0..4).map(|i| line(&format!("m{i}"), "local", MADRID, &format!("09:1{i}"))));
        let off = replayed(&kept_for_later(false), &lines).await;
        // the LP's prices alone, and calibrated against the optimiser
        for rounds in [0, 20] {
            let mut config = kept_for_later(true);
            config.lookahead.calibration_rounds = rounds;
            let on = replayed(&config, &lines).await;
            let (on, off) = (plan_of(&on, "cal"), plan_of(&off, "cal"));
            assert_eq!(on.shipments, off.shipments, "{rounds} rounds");
            assert_eq!(on.total_cost, off.total_cost);
            assert_eq!(on.opportunity_cost, 0.0);
            assert_eq!(on.shipments[0].node_id, "wh-a");
        }
    }

    /// A line of an orders file: a relaxed order of `units` of X to Madrid placed at `at`.
    fn relaxed(id: &str, units: u64, at: &str) -> String {
        format!(
            r#"{{"order_id":"{id}","segment":"relaxed","destination":{{"location":{{"lat":40.4165,"lon":-3.70256}},"country":"ES"}},"lines":[{{"line_id":"1","sku":"X","quantity":{units}}}],"placed_at":"{at}"}}"#
        )
    }

    async fn replay_text(config: &Config, text: &str) -> Result<Run, ReplayError> {
        let orders = OrdersFile::parse("day.jsonl", text, 10).unwrap();
        let options = Options {
            strategy: None,
            start: orders.first_placed_at().unwrap_or(NOON),
        };
        run(config, &config.stock, &orders, &options).await
    }

    #[tokio::test]
    async fn stock_events_and_rejections_between_orders_fill_what_waits_in_turn() {
        // one unit of X at wh-a, none at wh-b
        let config = tiny(&[("wh-a", 1)], 1000);
        let text = [
            // 1 held at wh-a, 2 wait from 09:00
            relaxed("o1", 3, "2026-11-23T09:00:00Z"),
            // two units at wh-b fill them after an hour
            r#"{"event":"stock","at":"2026-11-23T10:00:00Z","node_id":"wh-b","sku":"X","kind":"STOCK_UPDATE_KIND_DELTA","quantity":2}"#.to_owned(),
            // nothing left: both units wait from 11:00
            relaxed("o2", 2, "2026-11-23T11:00:00Z"),
            // wh-a turns o1 down: its unit goes back to wh-a's stock, where o2 (waiting since
            // 11:00) takes it; o1's unit waits, as wh-a may not ship it
            r#"{"event":"reject","at":"2026-11-23T12:00:00Z","order_id":"o1","node_id":"wh-a","reason":"REROUTE_REASON_STORE_REJECTED"}"#.to_owned(),
            // one more unit: o2 waited longer than o1 for it
            r#"{"event":"stock","at":"2026-11-23T14:00:00Z","node_id":"wh-b","sku":"X","kind":"STOCK_UPDATE_KIND_DELTA","quantity":1}"#.to_owned(),
        ]
        .join("\n");
        let run = replay_text(&config, &text).await.unwrap();
        assert_eq!(run.decisions.len(), 2);
        let t = &run.summary.segments["relaxed"];
        assert_eq!(
            (
                t.waited_units,
                t.filled_units,
                t.cancelled_waiting_units,
                t.still_waiting_units
            ),
            (5, 4, 0, 1),
            "{t:?}"
        );
        // o1's two units an hour each, o2's first an hour and its second three
        assert!((t.average_wait_hours() - 1.5).abs() < 1e-9, "{t:?}");
        assert_eq!(run.summary.all.filled_units, 4);
        // the report says so, for people and for scripts
        let text = run_report(&run);
        assert!(
            text.starts_with("replay of 2 orders and 3 events from day.jsonl"),
            "{text}"
        );
        assert!(text.contains("units waited for supply"), "{text}");
        let json = report_of(&run).json();
        assert_eq!(json["events"], 3);
        assert_eq!(json["base"]["units_filled"], 4);
        assert_eq!(
            json["base"]["segments"]["relaxed"]["units_still_waiting"],
            1
        );
        assert_eq!(json["base"]["average_wait_hours"], 1.5);
    }

    #[tokio::test]
    async fn units_waiting_past_the_segments_days_are_cancelled_on_the_replays_clock() {
        let mut config = tiny(&[], 1000);
        let mut segments: Vec<_> = config
            .segments
            .names()
            .into_iter()
            .map(|n| config.segments.get(&n).unwrap().clone())
            .collect();
        for s in &mut segments {
            s.backorder_max_days = (s.name == "relaxed").then_some(1);
        }
        config.segments = crate::domain::Segments::new(segments);
        let text = [
            relaxed("o1", 2, "2026-11-23T09:00:00Z"),
            relaxed("o2", 1, "2026-11-24T08:00:00Z"),
            relaxed("o3", 1, "2026-11-24T10:00:00Z"),
        ]
        .join("\n");
        let run = replay_text(&config, &text).await.unwrap();
        let t = &run.summary.segments["relaxed"];
        // o1's units were cancelled once a day had passed; o2's and o3's still wait
        assert_eq!((t.cancelled_waiting_units, t.still_waiting_units), (2, 2));
        let text = run_report(&run);
        assert!(text.contains("cancelled after waiting"), "{text}");
    }

    fn report_of(run: &Run) -> crate::replay::Report<'_> {
        crate::replay::Report {
            orders_file: "day.jsonl",
            base: crate::replay::Labelled {
                config: "config",
                run,
            },
            against: None,
            examples: 0,
        }
    }

    fn run_report(run: &Run) -> String {
        report_of(run).text()
    }

    #[tokio::test]
    async fn a_bad_event_is_an_error_of_the_file_naming_the_line() {
        let config = tiny(&[("wh-a", 1)], 1000);
        let bad =
            |event: &str| [relaxed("o1", 1, "2026-11-23T09:00:00Z"), event.to_owned()].join("\n");
        let cases = [
            (
                r#"{"event":"reject","order_id":"nope","node_id":"wh-a","reason":"REROUTE_REASON_OTHER"}"#,
                "",
                "no reservation for order",
            ),
            (
                r#"{"event":"reject","order_id":"o1","node_id":"wh-b","reason":"REROUTE_REASON_OTHER"}"#,
                "",
                "no units of order",
            ),
            (
                r#"{"event":"stock","node_id":"wh-a","sku":"X","kind":"STOCK_UPDATE_KIND_DELTA","quantity":-5}"#,
                "quantity",
                "below zero",
            ),
            (
                r#"{"event":"stock","node_id":"wh-a","sku":"X","kind":"STOCK_UPDATE_KIND_INBOUND","quantity":5,"expected_date":"2026-11-01","reference":"PO"}"#,
                "expected_date",
                "in the past",
            ),
        ];
        for (event, field, says) in cases {
            let e = replay_text(&config, &bad(event)).await.unwrap_err();
            let ReplayError::Order(e) = e else {
                panic!("{e:?}")
            };
            assert_eq!(e.line, 2, "{e}");
            assert!(e.field == field && e.problem.contains(says), "{event}: {e}");
        }
        // a malformed event is refused as the file is read
        for (event, field) in [
            (r#"{"event":"restock"}"#, "event"),
            (
                r#"{"event":"stock","kind":"STOCK_UPDATE_KIND_SHIPMENT"}"#,
                "kind",
            ),
            (r#"{"event":"reject","reason":"BAD"}"#, "reason"),
            (
                r#"{"event":"stock","at":"noon","kind":"STOCK_UPDATE_KIND_DELTA"}"#,
                "at",
            ),
            (r#"{"event":"stock","colour":"red"}"#, "colour"),
        ] {
            let e = OrdersFile::parse("day.jsonl", &bad(event), 10).unwrap_err();
            assert_eq!((e.line, e.field.as_str()), (2, field), "{e}");
        }
    }

    #[tokio::test]
    async fn an_unknown_segment_is_an_error_of_the_file_naming_the_line() {
        let config = tiny(&[("wh-a", 3)], 1000);
        let orders = OrdersFile::from_orders(
            "o.jsonl",
            [order("o1", "strict", 1), order("o2", "gold", 1)],
        );
        let options = Options {
            strategy: None,
            start: NOON,
        };
        let e = run(&config, &config.stock, &orders, &options)
            .await
            .unwrap_err();
        let ReplayError::Order(e) = e else {
            panic!("{e:?}")
        };
        assert_eq!((e.line, e.field.as_str()), (2, "segment"));
        assert!(
            e.to_string()
                .starts_with("o.jsonl:2: segment: unknown segment \"gold\""),
            "{e}"
        );
    }
}
