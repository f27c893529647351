//! Prices calibrated against the optimiser's own decisions: a Lagrangian relaxation of the
//! stock that the orders of a horizon share.
//!
//! The transportation LP prices a unit by the demand it would serve, with a parcel's fixed cost
//! spread over an order's units; the orders themselves decide with whole parcels, split
//! penalties, shipment limits and refusals. Calibration starts from the LP's prices and moves
//! them by subgradient steps: each expected order is planned alone by the optimiser, against the
//! stock there is now, with every unit it takes charged its node's price (and every unit of a
//! node's capacity, where capacity is shared too). Where the orders together take more of a
//! node's stock than there is, its price rises; where they leave some, it falls, to no lower
//! than zero. The orders' costs plus the charges, less the prices of all the stock, is a lower
//! bound on the cost of planning every order knowing them all, whatever the prices: the prices
//! that raise it most are the relaxation's dual prices, what a unit is worth to the orders
//! still to come as they themselves would decide. Charged whole to each order, they keep a
//! node's last units for the orders that lose most without them.

use std::collections::{BTreeMap, HashMap};

use crate::domain::{Network, Order, SolveStatus, StrategyKind};
use crate::sourcing::{Admitted, NodePrices, Problem, Strategies};
use crate::store::StockView;

/// A price table: sku → node → price of one unit.
pub type Table = BTreeMap<String, BTreeMap<String, f64>>;

/// An order expected in the horizon, standing for `weight` like it.
#[derive(Debug)]
pub struct Expected<'a> {
    pub admitted: Admitted<'a>,
    pub weight: f64,
}

impl Expected<'_> {
    /// What the order costs refused: every unit at its segment's unfilled penalty.
    pub fn refusal(&self) -> f64 {
        let units: u64 = self.admitted.order().lines.iter().map(|l| l.quantity).sum();
        units as f64 * self.admitted.segment().unfilled_penalty
    }
}

/// What calibration found.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibrated {
    /// The prices of the best bound (only those above zero).
    pub prices: Table,
    /// The best lower bound on planning every expected order knowing them all.
    pub bound: f64,
    /// Solves of an order, over all rounds, the optimiser did not prove optimal: the bound
    /// assumes none.
    pub unproven: usize,
}

/// How the steps are sized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steps {
    pub rounds: usize,
    /// The first step's share of the distance to the target (halved each time three rounds
    /// pass without a better bound).
    pub theta: f64,
    /// The cost of a known plan of every order, if any: the target steps aim at. Without one,
    /// they aim 5% above the best bound.
    pub upper: Option<f64>,
}

/// An order planned alone: cost to serve plus charges, units taken per (sku, node), and
/// whether it was proven optimal.
pub type Planned = (f64, Vec<(String, String, u64)>, bool);

/// One order's `problem` planned with `table`'s prices (laid out for its network as well)
/// charged whole, in place of any it had, or refused at `refusal` where that is less or no
/// plan exists.
pub fn plan_charged(
    problem: &mut Problem<'_>,
    refusal: f64,
    (table, laid): (&Table, &NodePrices),
    strategies: &Strategies,
) -> Planned {
    let kind = StrategyKind::Optimal;
    problem.charge_units(1.0, laid);
    let assignment = strategies.get(kind).assign(problem);
    let proven = matches!(
        assignment.status,
        SolveStatus::Optimal | SolveStatus::ExactFastPath
    );
    let Ok(plan) = problem.finish(kind, &assignment) else {
        return (refusal, Vec::new(), proven);
    };
    let mut charged = plan.total_cost;
    let mut units = Vec::new();
    for s in &plan.shipments {
        for l in &s.lines {
            let price = table
                .get(&l.sku)
                .and_then(|m| m.get(&s.node_id))
                .copied()
                .unwrap_or(0.0);
            charged += l.quantity as f64 * price;
            units.push((l.sku.clone(), s.node_id.clone(), l.quantity));
        }
    }
    if charged < refusal {
        (charged, units, proven)
    } else {
        (refusal, Vec::new(), proven)
    }
}

/// Calibrates `start` against the `expected` orders sharing `stock` (every unit a node holds
/// beyond those reserved, safety stock included) and, where `capacity` names a node, that
/// many units of its capacity, over `threads` threads.
#[allow(clippy::too_many_arguments)]
pub fn calibrate(
    expected: &[Expected<'_>],
    network: &Network,
    stock: &StockView,
    capacity: &HashMap<String, f64>,
    start: &Table,
    steps: Steps,
    strategies: &Strategies,
    today: chrono::NaiveDate,
    threads: usize,
) -> Calibrated {
    // the shared rows: each node's stock of each sku asked for, then each capacity
    let mut asked: Vec<&str> = expected
        .iter()
        .flat_map(|e| e.admitted.order().lines.iter().map(|l| l.sku.as_str()))
        .collect();
    asked.sort_unstable();
    asked.dedup();
    let mut rows: Vec<(String, String, f64)> = Vec::new();
    for sku in asked {
        let Some(levels) = stock.get(sku) else {
            continue;
        };
        let mut held: Vec<(&String, u64)> = levels
            .iter()
            .map(|(n, l)| (n, l.ats(true)))
            .filter(|(_, a)| *a > 0)
            .collect();
        held.sort_unstable();
        rows.extend(
            held.into_iter()
                .map(|(n, a)| (sku.to_owned(), n.clone(), a as f64)),
        );
    }
    let row_of: HashMap<(&str, &str), usize> = rows
        .iter()
        .enumerate()
        .map(|(i, (s, n, _))| ((s.as_str(), n.as_str()), i))
        .collect();
    let mut nodes: Vec<(&String, f64)> = capacity.iter().map(|(n, c)| (n, *c)).collect();
    nodes.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let node_of: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let mut lambda: Vec<f64> = rows
        .iter()
        .map(|(s, n, _)| start.get(s).and_then(|m| m.get(n)).copied().unwrap_or(0.0))
        .collect();
    let mut mu = vec![0.0; nodes.len()];
    let mut out = Calibrated {
        prices: Table::new(),
        bound: f64::NEG_INFINITY,
        unproven: 0,
    };
    // each order's problem, built once: the rounds change only its charges
    let mut problems: Vec<(Problem<'_>, f64)> = expected
        .iter()
        .map(|e| {
            let problem = Problem::build(&e.admitted, network, stock, &HashMap::new(), today);
            (problem, e.refusal())
        })
        .collect();
    let chunk = problems.len().div_ceil(threads.max(1)).max(1);
    let mut theta = steps.theta;
    let mut stale = 0;
    for _ in 0..steps.rounds {
        let mut table = Table::new();
        for (i, (sku, node, _)) in rows.iter().enumerate() {
            let p = lambda[i] + node_of.get(node.as_str()).map_or(0.0, |&n| mu[n]);
            if p > 0.0 {
                table
                    .entry(sku.clone())
                    .or_default()
                    .insert(node.clone(), p);
            }
        }
        let laid = NodePrices::new(&table, network);
        let solve = |part: &mut [(Problem<'_>, f64)]| -> Vec<Planned> {
            part.iter_mut()
                .map(|(problem, refusal)| {
                    plan_charged(problem, *refusal, (&table, &laid), strategies)
                })
                .collect()
        };
        let solved: Vec<_> = std::thread::scope(|scope| {
            let mut parts = problems.chunks_mut(chunk);
            let first = parts.next().unwrap_or_default();
            let others: Vec<_> = parts.map(|part| scope.spawn(|| solve(part))).collect();
            let mut all = solve(first);
            for part in others {
                all.extend(part.join().expect("a calibration thread"));
            }
            all
        });
        let mut used_row = vec![0.0; rows.len()];
        let mut used_node = vec![0.0; nodes.len()];
        let mut value = 0.0;
        for (e, (v, units, proven)) in expected.iter().zip(&solved) {
            value += e.weight * v;
            out.unproven += usize::from(!proven);
            for (sku, node, q) in units {
                if let Some(&r) = row_of.get(&(sku.as_str(), node.as_str())) {
                    used_row[r] += e.weight * *q as f64;
                }
                if let Some(&n) = node_of.get(node.as_str()) {
                    used_node[n] += e.weight * *q as f64;
                }
            }
        }
        let bound = value
            - lambda.iter().zip(&rows).map(|(l, r)| l * r.2).sum::<f64>()
            - mu.iter().zip(&nodes).map(|(m, n)| m * n.1).sum::<f64>();
        if bound > out.bound {
            out.bound = bound;
            out.prices = table;
            stale = 0;
        } else {
            stale += 1;
            if stale >= 3 {
                theta /= 2.0;
                stale = 0;
            }
        }
        // a step along the excess of each row, projected on prices of zero or more
        let g_row: Vec<f64> = used_row.iter().zip(&rows).map(|(u, r)| u - r.2).collect();
        let g_node: Vec<f64> = used_node.iter().zip(&nodes).map(|(u, n)| u - n.1).collect();
        let norm: f64 = g_row
            .iter()
            .zip(&lambda)
            .chain(g_node.iter().zip(&mu))
            .filter(|(g, p)| **g > 0.0 || **p > 0.0)
            .map(|(g, _)| g * g)
            .sum();
        if norm < 1e-9 {
            break;
        }
        let target = steps
            .upper
            .unwrap_or(out.bound + 0.05 * out.bound.abs().max(1.0));
        let step = theta * (target - bound).max(1e-6) / norm;
        for (l, g) in lambda.iter_mut().zip(&g_row) {
            *l = (*l + step * g).max(0.0);
        }
        for (m, g) in mu.iter_mut().zip(&g_node) {
            *m = (*m + step * g).max(0.0);
        }
    }
    out
}

/// The orders a demand stands for: for each sku, region and segment with units, one order of
/// one unit to the region's centre, standing for as many as the horizon expects.
pub fn expected_orders(
    demand: &super::Demand,
    settings: &super::Settings,
    now: crate::clock::Millis,
) -> Vec<(Order, f64)> {
    let scale = settings.horizon_ms(now) as f64 / demand.covered_ms.max(1) as f64;
    let mut keys: Vec<(&super::DemandKey, &u64)> = demand.units.iter().collect();
    keys.sort_unstable();
    keys.into_iter()
        .filter(|(_, u)| **u > 0)
        .map(|(k, &u)| {
            let order = Order {
                order_id: format!("expected-{}-{}-{}", k.sku, k.region.key(), k.segment),
                segment: k.segment.clone(),
                destination: k.region.center(settings.region_km),
                country: String::new(),
                lines: vec![crate::domain::OrderLine {
                    line_id: "1".into(),
                    sku: k.sku.clone(),
                    quantity: 1,
                    group: None,
                }],
                delivery: crate::domain::DeliveryMode::Ship,
                ship_complete: false,
                deliver_by: None,
            };
            (order, u as f64 * scale)
        })
        .collect()
}
