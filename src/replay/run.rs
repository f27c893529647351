//! Replaying: each order of a file reserved and committed through the real engine, in file
//! order, on a store of its own, and what became of it.

use std::sync::Arc;

use crate::clock::{ManualClock, Millis};
use crate::config::{Config, StockSeed};
use crate::domain::{Plan, Refusal, RefusalKind, StrategyKind};
use crate::engine::Engine;
use crate::error::Error;
use crate::store::MemoryStore;

use super::orders::{OrderFileError, OrdersFile, file_field};
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

    pub(super) fn cost(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Planned(plan) => Some(plan.total_cost),
            Outcome::Refused(_) => None,
        }
    }
}

/// A replay of a file of orders against one config.
#[derive(Debug, Clone)]
pub struct Run {
    pub strategy: StrategyKind,
    /// One per order, in file order.
    pub decisions: Vec<Decision>,
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

/// Replays `orders` in file order against `config`, starting from `stock`: each order is
/// reserved and committed exactly as the service does it, on a store of its own.
pub async fn run(
    config: &Config,
    stock: &[StockSeed],
    orders: &OrdersFile,
    options: &Options,
) -> Result<Run, ReplayError> {
    let clock = ManualClock::new(options.start);
    let engine = Engine::new(
        config.rules(),
        (&config.settings).into(),
        Arc::new(MemoryStore::with_stock(stock)),
        Arc::new(clock.clone()),
    );
    let strategy = options
        .strategy
        .unwrap_or(config.settings.sourcing.default_strategy);
    let mut decisions = Vec::with_capacity(orders.orders.len());
    let mut summary = Summary::default();
    for o in &orders.orders {
        if let Some(at) = o.placed_at {
            clock.set(at);
        }
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
            outcome,
        };
        summary.add(&decision);
        decisions.push(decision);
    }
    Ok(Run {
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
