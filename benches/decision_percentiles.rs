//! Latency percentiles of single sourcing decisions over many different orders, and how many
//! the optimiser proved optimal, for orders of 1, 3, 10 and 30 lines and the realistic mixes
//! of `common::Shape`; `optimal + look-ahead` decides with every unit priced by look-ahead (a
//! table computed from the run's own orders as the horizon's demand), and `optimal +
//! look-ahead, calibrated` with that table calibrated in 20 rounds and charged whole. Prints a
//! Markdown table. Run on one core with `taskset -c 0 cargo bench --bench decision_percentiles`.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use common::*;
use dom_router::domain::{SolveStatus, StrategyKind};
use dom_router::sourcing::NodePrices;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    // `cargo test --benches` runs this binary too; only measure under `cargo bench`
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let strategies = strategies();
    let none = HashMap::new();
    println!(
        "| network / lines | strategy | decisions | p50 ms | p99 ms | max ms | proven optimal | by the one-node or one-line path |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (nodes, shape, count) in [
        (31usize, Shape::Lines(1), 2000usize),
        (31, Shape::Lines(3), 2000),
        (31, Shape::Lines(10), 2000),
        (31, Shape::Lines(30), 300),
        (31, Shape::B2c, 2000),
        (31, Shape::Day, 2000),
        (50, Shape::Lines(10), 1000),
        (200, Shape::Lines(3), 500),
        (200, Shape::Lines(10), 300),
        (200, Shape::Lines(30), 100),
        (200, Shape::B2c, 1000),
        (1000, Shape::Lines(3), 300),
        (1000, Shape::Lines(10), 300),
        (1000, Shape::Lines(30), 100),
        (1000, Shape::B2c, 500),
        (1000, Shape::Day, 500),
    ] {
        let bench = if nodes == 31 {
            demo_shaped(shape, count, 7)
        } else {
            synthetic_shaped(nodes, shape, count, 7)
        };
        // look-ahead's prices as the bench's own orders would make them: every order of the
        // run as the demand of the horizon, against the stock
        let prices = lookahead_prices(&bench, &strategies, 0);
        // and calibrated against the optimiser from the same demand, charged whole
        let calibrated = lookahead_prices(&bench, &strategies, 20);
        // each laid out for the network once, as the service does once per table
        let laid = |p: &dom_router::lookahead::Prices| {
            (NodePrices::new(&p.by_sku, &bench.network), p.charged_whole)
        };
        let (prices, calibrated) = (laid(&prices), laid(&calibrated));
        // every destination's distances cached before any run is timed, so no run pays for
        // them and the next ones not
        for order in &bench.orders {
            bench.network.distances_km(&order.destination);
        }
        let runs = [
            (StrategyKind::Optimal, None),
            (StrategyKind::Optimal, Some(&prices)),
            (StrategyKind::Optimal, Some(&calibrated)),
            (StrategyKind::Nearest, None),
            (StrategyKind::Priority, None),
        ];
        for (kind, priced) in runs {
            let mut times = Vec::with_capacity(count);
            let mut proven = 0usize;
            let mut fast = 0usize;
            let mut planned = 0usize;
            for order in &bench.orders {
                let started = Instant::now();
                let plan = match priced {
                    None => decide(&bench, &strategies, kind, order, &bench.stock, &none),
                    Some((prices, whole)) => {
                        decide_priced(&bench, &strategies, order, (prices, *whole))
                    }
                };
                times.push(started.elapsed().as_secs_f64() * 1e3);
                if let Ok(plan) = plan {
                    planned += 1;
                    if matches!(
                        plan.status,
                        SolveStatus::Optimal | SolveStatus::ExactFastPath
                    ) {
                        proven += 1;
                    }
                    fast += usize::from(plan.status == SolveStatus::ExactFastPath);
                }
            }
            times.sort_by(f64::total_cmp);
            let share = |n: usize| format!("{:.1}%", 100.0 * n as f64 / planned.max(1) as f64);
            let (optimal, fast) = if kind == StrategyKind::Optimal {
                (share(proven), share(fast))
            } else {
                ("-".into(), "-".into())
            };
            let label = match priced {
                None => kind.to_string(),
                Some((_, true)) => format!("{kind} + look-ahead, calibrated"),
                Some(_) => format!("{kind} + look-ahead"),
            };
            println!(
                "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {} | {} |",
                bench.name,
                label,
                count,
                percentile(&times, 0.5),
                percentile(&times, 0.99),
                times[times.len() - 1],
                optimal,
                fast
            );
        }
    }
}
