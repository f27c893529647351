//! The accounting of a replay: what its decisions add up to, over all orders and per segment.

use std::collections::BTreeMap;

use crate::domain::{Plan, RefusalKind};
use crate::store::{DecisionKind, Fate, Reservation};

use super::run::{Decision, Outcome};

/// What a replay adds up to, over all orders or one segment's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub orders: u64,
    pub units: u64,
    /// Orders held and committed, including those planned wholly as backorders.
    pub planned: u64,
    /// Cost to serve: what the plans cost to ship, plus every unit no plan ships at its
    /// segment's unfilled penalty, those of refused orders included, so that a rule that
    /// refuses more orders never looks cheaper for it. The sum of the three below.
    pub cost: f64,
    /// What the plans cost to ship: shipping, handling, parcels, transfers, split and lateness
    /// penalties.
    pub fulfilment_cost: f64,
    /// The segments' penalties for the units plans leave unfilled.
    pub unfilled_penalty: f64,
    /// The units of refused orders at their segment's unfilled penalty.
    pub refusal_penalty: f64,
    pub shipments: u64,
    /// Planned orders shipped in more than one parcel.
    pub split: u64,
    /// Units no plan ships: those left unfilled by plans, and every unit of refused orders.
    pub unfilled_units: u64,
    pub refused: u64,
    pub refused_by_kind: BTreeMap<RefusalKind, u64>,
    /// Shipments (parcels) per node.
    pub shipments_by_node: BTreeMap<String, u64>,
    /// Units that waited for supply (a segment that backorders): filled, cancelled after
    /// waiting, or still waiting at the end.
    pub waited_units: u64,
    pub filled_units: u64,
    pub cancelled_waiting_units: u64,
    pub still_waiting_units: u64,
    /// How long the filled units waited, in unit-milliseconds.
    pub filled_wait_ms: u64,
}

impl Totals {
    pub fn add_plan(&mut self, units: u64, plan: &Plan) {
        self.orders += 1;
        self.units += units;
        self.planned += 1;
        self.cost += plan.total_cost;
        self.fulfilment_cost += plan.total_cost - plan.cost.unfilled;
        self.unfilled_penalty += plan.cost.unfilled;
        self.shipments += plan.shipments.len() as u64;
        self.split += u64::from(plan.shipments.len() > 1);
        self.unfilled_units += plan.unfilled_units();
        for s in &plan.shipments {
            *self.shipments_by_node.entry(s.node_id.clone()).or_default() += 1;
        }
    }

    /// A refused order of `units`, charged `penalty`.
    pub fn add_refusal(&mut self, units: u64, kind: RefusalKind, penalty: f64) {
        self.orders += 1;
        self.units += units;
        self.cost += penalty;
        self.refusal_penalty += penalty;
        self.unfilled_units += units;
        self.refused += 1;
        *self.refused_by_kind.entry(kind).or_default() += 1;
    }

    /// What became of the units of `r` that waited for supply.
    pub fn add_backorders(&mut self, r: &Reservation) {
        for d in &r.history {
            let units = |fate: fn(&Fate) -> bool| -> u64 {
                d.fates
                    .iter()
                    .filter(|f| fate(&f.fate))
                    .map(|f| f.units)
                    .sum()
            };
            match d.kind {
                DecisionKind::Fill => {
                    self.filled_units += units(|f| matches!(f, Fate::Filled { .. }));
                    self.filled_wait_ms = self.filled_wait_ms.saturating_add(d.waited_ms);
                }
                DecisionKind::Expire => {
                    self.cancelled_waiting_units += units(|f| matches!(f, Fate::Cancelled));
                }
                DecisionKind::Reroute => {}
            }
        }
        self.still_waiting_units += r.waiting.iter().map(|w| w.units).sum::<u64>();
        self.waited_units =
            self.filled_units + self.cancelled_waiting_units + self.still_waiting_units;
    }

    /// How long the filled units waited on average, in hours.
    pub fn average_wait_hours(&self) -> f64 {
        self.filled_wait_ms as f64 / self.filled_units.max(1) as f64 / 3_600_000.0
    }

    /// Cost to serve per order, refused orders included.
    pub fn cost_per_order(&self) -> f64 {
        self.cost / self.orders.max(1) as f64
    }

    /// Shipments per planned order; an order planned wholly as a backorder counts as zero.
    pub fn shipments_per_order(&self) -> f64 {
        self.shipments as f64 / self.planned.max(1) as f64
    }

    /// The share of planned orders shipped in more than one parcel, 0 to 1.
    pub fn split_rate(&self) -> f64 {
        self.split as f64 / self.planned.max(1) as f64
    }
}

/// Totals over all orders and per segment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub all: Totals,
    pub segments: BTreeMap<String, Totals>,
}

impl Summary {
    /// What became of the units of `r`, an order of `segment`, that waited for supply.
    pub fn add_backorders(&mut self, segment: &str, r: &Reservation) {
        self.all.add_backorders(r);
        self.segments
            .entry(segment.to_owned())
            .or_default()
            .add_backorders(r);
    }

    pub fn add(&mut self, d: &Decision) {
        let segment = self.segments.entry(d.segment.clone()).or_default();
        match &d.outcome {
            Outcome::Planned(plan) => {
                self.all.add_plan(d.units, plan);
                segment.add_plan(d.units, plan);
            }
            Outcome::Refused(refusal) => {
                let penalty = d.refusal_penalty();
                self.all.add_refusal(d.units, refusal.kind, penalty);
                segment.add_refusal(d.units, refusal.kind, penalty);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::domain::RefusalKind;
    use crate::replay::Outcome;
    use crate::replay::fixtures::{order, plan, replay, tiny};

    #[tokio::test]
    async fn orders_take_stock_in_turn_and_every_figure_adds_up() {
        let config = tiny(&[("wh-a", 3), ("wh-b", 1)], 1000);
        let orders = vec![
            order("o1", "strict", 2),
            order("o2", "strict", 3),
            order("o3", "relaxed", 3),
        ];
        let run = replay(&config, orders.clone()).await;
        let [d1, d2, d3] = &run.decisions[..] else {
            panic!("{:?}", run.decisions)
        };
        assert_eq!(d1.describe(), "wh-a 2");
        // o2 alone would be planned: it is refused because o1 holds two of the four units
        assert!(
            matches!(&d2.outcome, Outcome::Refused(r) if r.kind == RefusalKind::NotEnoughStock),
            "{d2:?}"
        );
        let alone = replay(&config, vec![orders[1].clone()]).await;
        plan(&alone.decisions[0]);
        let p3 = plan(d3);
        assert_eq!(
            p3.shipments
                .iter()
                .flat_map(|s| &s.lines)
                .map(|l| l.quantity)
                .sum::<u64>()
                + p3.unfilled_units(),
            3
        );

        let all = &run.summary.all;
        assert_eq!(
            (all.orders, all.units, all.planned, all.refused),
            (3, 8, 2, 1)
        );
        assert_eq!(
            all.refused_by_kind,
            BTreeMap::from([(RefusalKind::NotEnoughStock, 1)])
        );
        let p1 = plan(d1);
        // o2's three units, refused, at strict's unfilled penalty
        let strict_penalty = config.segments.get("strict").unwrap().unfilled_penalty;
        assert!(strict_penalty > 0.0);
        assert_eq!(all.refusal_penalty, 3.0 * strict_penalty);
        assert_eq!(all.unfilled_penalty, p1.cost.unfilled + p3.cost.unfilled);
        assert_eq!(
            all.fulfilment_cost,
            p1.total_cost - p1.cost.unfilled + p3.total_cost - p3.cost.unfilled
        );
        assert!(
            (all.cost - (p1.total_cost + p3.total_cost + 3.0 * strict_penalty)).abs() < 1e-9,
            "{all:?}"
        );
        assert!(
            (all.cost - (all.fulfilment_cost + all.unfilled_penalty + all.refusal_penalty)).abs()
                < 1e-9
        );
        assert_eq!(d2.cost(), 3.0 * strict_penalty);
        assert_eq!(
            all.shipments,
            (p1.shipments.len() + p3.shipments.len()) as u64
        );
        assert_eq!(
            all.split,
            u64::from(p1.shipments.len() > 1) + u64::from(p3.shipments.len() > 1)
        );
        assert_eq!(all.unfilled_units, 3 + p3.unfilled_units());
        assert_eq!(all.cost_per_order(), all.cost / 3.0);
        assert_eq!(
            all.shipments_by_node.get("wh-a").copied(),
            Some(1 + u64::from(p3.shipments.iter().any(|s| s.node_id == "wh-a")))
        );

        let strict = &run.summary.segments["strict"];
        assert_eq!((strict.orders, strict.units, strict.refused), (2, 5, 1));
        assert_eq!(strict.cost, p1.total_cost + 3.0 * strict_penalty);
        assert_eq!(strict.refusal_penalty, 3.0 * strict_penalty);
        let relaxed = &run.summary.segments["relaxed"];
        assert_eq!((relaxed.orders, relaxed.planned), (1, 1));
        assert_eq!(relaxed.unfilled_units, p3.unfilled_units());
    }
}
