//! Replays a day of synthetic orders through `nearest`, `priority` and `optimal` on the demo
//! network, each from the same starting stock, holding what each plan takes (so scarce skus
//! run short as the day goes on), and prints a Markdown table of cost to serve. Run with
//! `cargo bench --bench replay`.

mod common;

use std::collections::HashMap;

use common::*;
use dom_router::config::{Config, ConfigSource};
use dom_router::domain::StrategyKind;
use dom_router::store::StockView;
use dom_router::synth;

const ORDERS: usize = 5_000;

#[derive(Default)]
struct Totals {
    cost: f64,
    planned: usize,
    refused: usize,
    shipments: usize,
    split: usize,
    units: u64,
    unfilled: u64,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let config = Config::load(ConfigSource::Embedded, std::iter::empty()).expect("demo config");
    let start = dom_router::store::seed_view(&config.stock);
    let mut skus: Vec<String> = start.keys().cloned().collect();
    skus.sort();
    let mut gen_orders = synth::OrderGen::new(synth::cities(CITIES, &["ES", "PT"]), skus, 2026);
    let segments = ["standard", "standard", "standard", "vip", "marketplace"];
    let mut rng = synth::Rng::new(9);
    let orders: Vec<_> = (0..ORDERS)
        .map(|i| {
            let lines = 1 + (rng.below(100) as usize).min(99) / 30; // 1 to 4 lines, mostly 1-2
            gen_orders.order(&format!("o{i}"), segments[i % segments.len()], lines)
        })
        .collect();
    let strategies = strategies();
    let mut results = Vec::new();
    for kind in [
        StrategyKind::Nearest,
        StrategyKind::Priority,
        StrategyKind::Optimal,
    ] {
        let mut stock: StockView = start.clone();
        let mut capacity: HashMap<String, u64> = HashMap::new();
        let mut t = Totals::default();
        for order in &orders {
            let rules = config.segments.get(&order.segment).expect("segment");
            let bench = Bench {
                name: String::new(),
                network: config.network.clone(),
                stock: StockView::new(),
                rules: rules.clone(),
                orders: Vec::new(),
            };
            let units: u64 = order.lines.iter().map(|l| l.quantity).sum();
            t.units += units;
            match decide(&bench, &strategies, kind, order, &stock, &capacity) {
                Ok(plan) => {
                    t.planned += 1;
                    t.cost += plan.total_cost;
                    t.shipments += plan.shipments.len();
                    t.split += usize::from(plan.shipments.len() > 1);
                    t.unfilled += plan.unfilled_units();
                    for s in &plan.shipments {
                        for l in &s.lines {
                            let level = stock
                                .get_mut(&l.sku)
                                .and_then(|m| m.get_mut(&s.node_id))
                                .expect("planned from a stocked node");
                            level.reserved += l.quantity;
                            *capacity.entry(s.node_id.clone()).or_default() += l.quantity;
                        }
                    }
                }
                Err(_) => {
                    t.refused += 1;
                    t.unfilled += units;
                }
            }
        }
        results.push((kind, t));
    }
    let optimal_cost = results[2].1.cost;
    println!(
        "{ORDERS} orders on the demo network (60% standard, 20% vip, 20% marketplace), {} units",
        results[0].1.units
    );
    println!();
    println!(
        "| strategy | cost to serve | per planned order | shipments per order | split rate | unfilled units | refused orders | optimal saves |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (kind, t) in &results {
        let saving = if *kind == StrategyKind::Optimal {
            "-".to_owned()
        } else {
            format!("{:.1}%", 100.0 * (t.cost - optimal_cost) / t.cost)
        };
        println!(
            "| {kind} | {:.2} | {:.2} | {:.3} | {:.1}% | {} | {} | {saving} |",
            t.cost,
            t.cost / t.planned.max(1) as f64,
            t.shipments as f64 / t.planned.max(1) as f64,
            100.0 * t.split as f64 / t.planned.max(1) as f64,
            t.unfilled,
            t.refused,
        );
    }
}
