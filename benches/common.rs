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

/// The demo network and stock, standard segment, `count` orders of `lines` lines.
pub fn demo(lines: usize, count: usize, seed: u64) -> Bench {
    let config = Config::load(ConfigSource::Embedded, std::iter::empty()).expect("demo config");
    let stock = dom_router::store::seed_view(&config.stock);
    let mut skus: Vec<String> = stock.keys().cloned().collect();
    skus.sort();
    let mut orders = synth::OrderGen::new(synth::cities(CITIES, &["ES", "PT"]), skus, seed);
    Bench {
        name: format!("demo31/{lines}"),
        orders: (0..count)
            .map(|i| orders.order(&format!("o{i}"), "standard", lines))
            .collect(),
        rules: config.segments.get("standard").expect("standard").clone(),
        network: config.network,
        stock,
    }
}

/// A synthetic network of `nodes` nodes, 400 skus each in about a fifth of the nodes.
pub fn synthetic(nodes: usize, lines: usize, count: usize, seed: u64) -> Bench {
    let us = synth::cities(CITIES, &["US"]);
    let network = synth::network(&us, nodes, 5);
    let skus = synth::skus(400);
    let stock = dom_router::store::seed_view(&synth::stock(&network, &skus, 0.2, 6));
    let mut orders = synth::OrderGen::new(us, skus, seed);
    Bench {
        name: format!("us{nodes}/{lines}"),
        orders: (0..count)
            .map(|i| orders.order(&format!("o{i}"), "standard", lines))
            .collect(),
        rules: synth::standard_segment(),
        network,
        stock,
    }
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
