//! Latency of one sourcing decision (build candidates, decide, price and explain) for each
//! strategy, on networks of 31 (demo), 50, 200 and 1,000 nodes and orders of 1, 3, 10 and 30
//! lines. Run with `cargo bench --bench decision`.

mod common;

use std::collections::HashMap;
use std::hint::black_box;

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};

use dom_router::domain::StrategyKind;

fn decisions(c: &mut Criterion) {
    let strategies = strategies();
    let none = HashMap::new();
    for nodes in [31usize, 50, 200, 1000] {
        for lines in [1usize, 3, 10, 30] {
            let bench = if nodes == 31 {
                demo(lines, 32, 1)
            } else {
                synthetic(nodes, lines, 32, 1)
            };
            let mut group = c.benchmark_group(format!("decision/{}", bench.name));
            if nodes >= 200 && lines == 30 {
                group.sample_size(10);
            }
            for kind in [
                StrategyKind::Optimal,
                StrategyKind::Nearest,
                StrategyKind::Priority,
            ] {
                let mut i = 0;
                group.bench_function(kind.as_str(), |b| {
                    b.iter(|| {
                        let order = &bench.orders[i % bench.orders.len()];
                        i += 1;
                        black_box(
                            decide(&bench, &strategies, kind, order, &bench.stock, &none).ok(),
                        )
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = decisions
}
criterion_main!(benches);
