//! Networks, stock and orders shared by the benchmarks: the demo network with its stock, and
//! synthetic networks at US cities with stock in about a fifth of the nodes.
#![allow(dead_code)]

use std::collections::HashMap;

use chrono::NaiveDate;
use dom_router::config::{Config, ConfigSource};
use dom_router::domain::{Network, Order, Plan, SegmentRules, StrategyKind};
use dom_router::sourcing::{Admitted, Backend, Problem, Strategies};
use dom_router::store::StockView;
use dom_router::synth;

pub const CITIES: &str = include_str!("data/cities.csv");

/// A network, its stock, the rules orders are sourced under, and orders to source.
pub struct Bench {
    pub name: String,
    pub network: Network,
    pub stock: StockView,
    pub rules: SegmentRules,
    pub orders: Vec<Order>,
}

pub fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 2).expect("a date")
}

/// How many lines each order of a bench carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Every order this many.
    Lines(usize),
    /// Web orders: 1 line six times in ten, 2 lines three times, 3 lines once.
    B2c,
    /// The cost replay's day: 1, 2 or 3 lines three times in ten each, 4 lines once.
    Day,
}

impl Shape {
    fn label(self) -> String {
        match self {
            Shape::Lines(n) => n.to_string(),
            Shape::B2c => "1-3".into(),
            Shape::Day => "1-4".into(),
        }
    }

    fn lines(self, rng: &mut synth::Rng) -> usize {
        let draw = rng.below(10) as usize;
        match self {
            Shape::Lines(n) => n,
            Shape::B2c => [1, 1, 1, 1, 1, 1, 2, 2, 2, 3][draw],
            Shape::Day => [1, 1, 1, 2, 2, 2, 3, 3, 3, 4][draw],
        }
    }
}

/// The demo network and stock, standard segment, `count` orders of `lines` lines.
pub fn demo(lines: usize, count: usize, seed: u64) -> Bench {
    demo_shaped(Shape::Lines(lines), count, seed)
}

/// The demo network and stock, standard segment, `count` orders of the given shape.
pub fn demo_shaped(shape: Shape, count: usize, seed: u64) -> Bench {
    let config = Config::load(ConfigSource::Embedded, std::iter::empty()).expect("demo config");
    let stock = dom_router::store::seed_view(&config.stock);
    let mut skus: Vec<String> = stock.keys().cloned().collect();
    skus.sort();
    let orders = synth::OrderGen::new(synth::cities(CITIES, &["ES", "PT"]), skus, seed);
    Bench {
        name: format!("demo31/{}", shape.label()),
        orders: shaped(orders, shape, count, seed),
        rules: config.segments.get("standard").expect("standard").clone(),
        network: config.network,
        stock,
    }
}

/// A synthetic network of `nodes` nodes, 400 skus each in about a fifth of the nodes.
pub fn synthetic(nodes: usize, lines: usize, count: usize, seed: u64) -> Bench {
    synthetic_shaped(nodes, Shape::Lines(lines), count, seed)
}

/// As [`synthetic`], orders of the given shape.
pub fn synthetic_shaped(nodes: usize, shape: Shape, count: usize, seed: u64) -> Bench {
    let us = synth::cities(CITIES, &["US"]);
    let network = synth::network(&us, nodes, 5);
    let skus = synth::skus(400);
    let stock = dom_router::store::seed_view(&synth::stock(&network, &skus, 0.2, 6));
    let orders = synth::OrderGen::new(us, skus, seed);
    Bench {
        name: format!("us{nodes}/{}", shape.label()),
        orders: shaped(orders, shape, count, seed),
        rules: synth::standard_segment(),
        network,
        stock,
    }
}

/// `count` orders of `shape`, the line counts drawn apart from the orders' own draws.
fn shaped(mut orders: synth::OrderGen, shape: Shape, count: usize, seed: u64) -> Vec<Order> {
    let mut rng = synth::Rng::new(seed ^ 0x5eed);
    (0..count)
        .map(|i| orders.order(&format!("o{i}"), "standard", shape.lines(&mut rng)))
        .collect()
}

pub fn strategies() -> Strategies {
    let config = Config::load(ConfigSource::Embedded, std::iter::empty()).expect("demo config");
    let s = &config.settings.sourcing;
    Strategies::new(
        s.solver,
        std::time::Duration::from_millis(s.solve_budget_ms),
    )
}

pub fn strategies_with(backend: Backend) -> Strategies {
    let mut s = strategies();
    s.optimal.backend = backend;
    s
}

/// Look-ahead on, as configured by default, and `orders` as the demand of its horizon.
pub fn horizon_demand(
    orders: &[Order],
) -> (
    dom_router::lookahead::Settings,
    dom_router::lookahead::Demand,
) {
    use dom_router::lookahead::{Demand, Observed, Settings};
    let settings = Settings {
        enabled: true,
        ..Settings::default()
    };
    let mut demand = Demand {
        covered_ms: settings.horizon_secs as i64 * 1000,
        ..Demand::default()
    };
    for order in orders {
        for (k, u) in Observed::order(order, settings.region_km).units {
            *demand.units.entry(k).or_default() += u;
        }
        demand.orders += 1;
    }
    (settings, demand)
}

/// Look-ahead's prices for `bench`: its orders as the demand of the horizon, against its
/// stock, calibrated against the optimiser in `rounds` rounds and charged whole (0: the LP's).
pub fn lookahead_prices(
    bench: &Bench,
    strategies: &Strategies,
    rounds: u64,
) -> dom_router::lookahead::Prices {
    let (mut settings, demand) = horizon_demand(&bench.orders);
    settings.calibration_rounds = rounds;
    let segments = dom_router::domain::Segments::new([bench.rules.clone()]);
    dom_router::lookahead::Prices::calibrated(
        &bench.network,
        &segments,
        &bench.stock,
        &demand,
        &settings,
        0,
        strategies,
        today(),
    )
}

/// One sourcing decision by `optimal` with every unit priced by look-ahead's `prices`.
pub fn decide_priced(
    bench: &Bench,
    strategies: &Strategies,
    order: &Order,
    (prices, whole): (&dom_router::sourcing::NodePrices, bool),
) -> Result<Plan, dom_router::Error> {
    let admitted = Admitted::under(order, &bench.rules, &bench.network)?;
    let mut problem = Problem::build(
        &admitted,
        &bench.network,
        &bench.stock,
        &HashMap::new(),
        today(),
    );
    // as the engine does: a calibrated table charged whole, the LP's above the cheapest holder
    if whole {
        problem.charge_units(1.0, prices);
    } else {
        problem.price_units(1.0, prices);
    }
    let kind = StrategyKind::Optimal;
    problem.finish(kind, &strategies.get(kind).assign(&problem))
}

/// One sourcing decision, as the engine makes it on a pool thread.
pub fn decide(
    bench: &Bench,
    strategies: &Strategies,
    kind: StrategyKind,
    order: &Order,
    stock: &StockView,
    capacity: &HashMap<String, u64>,
) -> Result<Plan, dom_router::Error> {
    let admitted = Admitted::under(order, &bench.rules, &bench.network)?;
    let problem = Problem::build(&admitted, &bench.network, stock, capacity, today());
    problem.finish(kind, &strategies.get(kind).assign(&problem))
}
