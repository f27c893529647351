//! Replays a day of synthetic orders through `nearest`, `priority` and `optimal`, on the demo
//! network and on a synthetic network of 1,000 US nodes (the demo's segments), each from the
//! same starting stock, holding what each plan takes (so scarce skus run short as the day goes
//! on), and prints a Markdown table of cost to serve per network. Each replay is the one
//! `dom-router replay` makes: the engine on a private in-memory store. Run with
//! `cargo bench --bench replay`.

mod common;

use common::*;
use dom_router::config::{Config, ConfigSource, StockSeed};
use dom_router::domain::StrategyKind;
use dom_router::replay::{self, OrdersFile};
use dom_router::synth::{self, MixedDay, OrderGen};

const ORDERS: usize = 5_000;

/// Orders of the day on 1,000 nodes.
const LARGE_ORDERS: usize = 2_000;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let config = Config::load(ConfigSource::Embedded, std::iter::empty()).expect("demo config");
    let mut skus: Vec<String> = dom_router::store::seed_view(&config.stock)
        .into_keys()
        .collect();
    skus.sort();
    let day = MixedDay::new(
        OrderGen::new(synth::cities(CITIES, &["ES", "PT"]), skus, 2026),
        9,
    );
    let orders = OrdersFile::from_orders("synthetic day", day.take(ORDERS));
    compare(
        &format!("{ORDERS} orders on the demo network (60% standard, 20% vip, 20% marketplace)"),
        &config,
        &config.stock,
        &orders,
    );
    println!();
    let us = synth::cities(CITIES, &["US"]);
    let mut large = config.clone();
    large.network = synth::network(&us, 1_000, 5);
    let large_skus = synth::skus(400);
    let large_stock = synth::stock(&large.network, &large_skus, 0.2, 6);
    let day = MixedDay::new(OrderGen::new(us, large_skus, 2026), 9);
    let orders = OrdersFile::from_orders("synthetic day", day.take(LARGE_ORDERS));
    compare(
        &format!("{LARGE_ORDERS} orders on 1,000 US nodes (the same segments and line mix)"),
        &large,
        &large_stock,
        &orders,
    );
}

/// Replays `orders` with each strategy and prints the table.
fn compare(title: &str, config: &Config, stock: &[StockSeed], orders: &OrdersFile) {
    let options = |kind| replay::Options {
        strategy: Some(kind),
        start: today()
            .and_hms_opt(9, 0, 0)
            .expect("09:00")
            .and_utc()
            .timestamp_millis(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let results: Vec<(StrategyKind, replay::Totals)> = [
        StrategyKind::Nearest,
        StrategyKind::Priority,
        StrategyKind::Optimal,
    ]
    .into_iter()
    .map(|kind| {
        let run = runtime
            .block_on(replay::run(config, stock, orders, &options(kind)))
            .expect("replay");
        (kind, run.summary.all)
    })
    .collect();
    let optimal_cost = results[2].1.cost;
    println!("{title}, {} units", results[0].1.units);
    println!();
    println!(
        "| strategy | cost to serve | fulfilment | unfilled penalty | refusal penalty | per order | shipments per order | split rate | unfilled units | refused orders | optimal saves |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (kind, t) in &results {
        let saving = if *kind == StrategyKind::Optimal {
            "-".to_owned()
        } else {
            format!("{:.1}%", 100.0 * (t.cost - optimal_cost) / t.cost)
        };
        println!(
            "| {kind} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.3} | {:.1}% | {} | {} | {saving} |",
            t.cost,
            t.fulfilment_cost,
            t.unfilled_penalty,
            t.refusal_penalty,
            t.cost_per_order(),
            t.shipments_per_order(),
            100.0 * t.split_rate(),
            t.unfilled_units,
            t.refused,
        );
    }
}
