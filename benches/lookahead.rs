//! Look-ahead against per-order sourcing on scarce and plentiful days, with a clairvoyant
//! reference. Each day is a replay (the engine on a private in-memory store, orders placed
//! `SPACING_SECS` apart, as `dom-router replay` makes it) by `nearest`, by `optimal` planning
//! each order for itself, and by `optimal` with look-ahead on (demand learned from the orders
//! replayed so far, prices refreshed on the replay's clock). Cost to serve charges refused
//! orders' units at their segment's unfilled penalty.
//!
//! The clairvoyant reference knows the whole day. Its optimum is bracketed: from above by the
//! best plan any run found, from below by a relaxation of the whole-day problem that drops
//! node capacity, protection, split penalties and integrality and spreads each parcel's fixed
//! cost over the order's units (never more than the parcel pays), which splits by sku into
//! transportation problems solved exactly. "Gap closed" is how much of per-order optimal's gap
//! to the clairvoyant optimum look-ahead closes, from the lower end of the bracket (a floor on
//! the share) to the upper.
//!
//! Run with `cargo bench --bench lookahead`.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use dom_router::config::{Config, ConfigSource, StockSeed};
use dom_router::domain::{Network, StrategyKind};
use dom_router::lookahead::flow::Transport;
use dom_router::replay::{self, OrdersFile, Totals};
use dom_router::sourcing::{Admitted, Problem};
use dom_router::synth::{self, MixedDay, OrderGen};

const SPACING_SECS: i64 = 15;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let demo = Config::load(ConfigSource::Embedded, std::iter::empty()).expect("demo config");
    let mut demo_skus: Vec<String> = dom_router::store::seed_view(&demo.stock)
        .into_keys()
        .collect();
    demo_skus.sort();
    let iberia = synth::cities(CITIES, &["ES", "PT"]);
    let demo_day = |seed| {
        MixedDay::new(
            OrderGen::new(iberia.clone(), demo_skus.clone(), seed),
            seed + 7,
        )
        .take(2_000)
        .collect::<Vec<_>>()
    };

    let us = synth::cities(CITIES, &["US"]);
    let mut large = demo.clone();
    large.network = synth::network(&us, 1_000, 5);
    let large_skus = synth::skus(400);
    let large_stock = synth::stock(&large.network, &large_skus, 0.2, 6);
    let large_day = MixedDay::new(OrderGen::new(us, large_skus, 2026), 9)
        .take(1_000)
        .collect::<Vec<_>>();

    let days = [
        (
            "demo, scarce (demo stock)",
            &demo,
            demo.stock.clone(),
            demo_day(2026),
        ),
        (
            "demo, scarce (other day)",
            &demo,
            demo.stock.clone(),
            demo_day(77),
        ),
        (
            "demo, plentiful (stock x20)",
            &demo,
            scaled(&demo.stock, 20.0),
            demo_day(2026),
        ),
        (
            "us1000, scarce (stock x0.1)",
            &large,
            scaled(&large_stock, 0.1),
            large_day.clone(),
        ),
        ("us1000, plentiful", &large, large_stock.clone(), large_day),
    ];
    println!(
        "| day | orders | run | cost to serve | fulfilment | penalties | unfilled units | refused | split rate | vs optimal | gap closed |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, config, stock, orders) in days {
        let file = placed(&orders);
        let run = |kind, lookahead: bool| {
            let mut config = config.clone();
            config.lookahead.enabled = lookahead;
            tune(&mut config.lookahead);
            let started = std::time::Instant::now();
            let totals = replayed(&config, &stock, &file, kind);
            (totals, started.elapsed())
        };
        let (nearest, _) = run(StrategyKind::Nearest, false);
        let (optimal, t_off) = run(StrategyKind::Optimal, false);
        let (ahead, t_on) = run(StrategyKind::Optimal, true);
        let bound = clairvoyant_bound(config, &stock, &orders);
        let best = [nearest.cost, optimal.cost, ahead.cost]
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        let closed = |star: f64| {
            let gap = optimal.cost - star;
            if gap <= 1e-9 {
                f64::NAN
            } else {
                100.0 * (optimal.cost - ahead.cost) / gap
            }
        };
        for (label, t) in [
            ("nearest", &nearest),
            ("optimal", &optimal),
            ("optimal + look-ahead", &ahead),
        ] {
            let against = 100.0 * (t.cost - optimal.cost) / optimal.cost;
            let share = |v: f64| {
                if v.is_finite() {
                    format!("{v:.0}%")
                } else {
                    "-".into()
                }
            };
            let gap = if std::ptr::eq(t, &ahead) {
                format!("{} to {}", share(closed(bound)), share(closed(best)))
            } else {
                "-".into()
            };
            println!(
                "| {name} | {} | {label} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1}% | {against:+.2}% | {gap} |",
                t.orders,
                t.cost,
                t.fulfilment_cost,
                t.unfilled_penalty + t.refusal_penalty,
                t.unfilled_units,
                t.refused,
                100.0 * t.split_rate(),
            );
        }
        println!(
            "| {name} | | clairvoyant | {bound:.2} to {best:.2} | | | | | | {:+.2}% to {:+.2}% | |",
            100.0 * (bound - optimal.cost) / optimal.cost,
            100.0 * (best - optimal.cost) / optimal.cost,
        );
        // one refresh from the whole day's demand, timed
        let (priced, took) = refresh_from(config, &stock, &orders);
        eprintln!(
            "{name}: replay {:.1} s per-order, {:.1} s with look-ahead; a refresh from the day's demand: {:.1} ms, {priced} node and sku pairs priced",
            t_off.as_secs_f64(),
            t_on.as_secs_f64(),
            took.as_secs_f64() * 1e3
        );
    }
}

/// Look-ahead's prices from every order of the day as the horizon's demand: how many node and
/// sku pairs are priced, and how long computing them took.
fn refresh_from(
    config: &Config,
    stock: &[StockSeed],
    orders: &[dom_router::domain::Order],
) -> (usize, std::time::Duration) {
    let (settings, demand) = horizon_demand(orders);
    let view = dom_router::store::seed_view(stock);
    let started = std::time::Instant::now();
    let prices = dom_router::lookahead::Prices::compute(
        &config.network,
        &config.segments,
        &view,
        &demand,
        &settings,
        0,
    );
    let took = started.elapsed();
    (prices.by_sku.values().map(|m| m.len()).sum(), took)
}

/// `[lookahead]` as the environment tunes it for an experiment: `LOOKAHEAD_WEIGHT`,
/// `LOOKAHEAD_HORIZON_SECS`, `LOOKAHEAD_WINDOW_SECS`, `LOOKAHEAD_REGION_KM`,
/// `LOOKAHEAD_LOST_SALE_COST`, `LOOKAHEAD_REFRESH_SECS`; the defaults otherwise.
fn tune(s: &mut dom_router::lookahead::Settings) {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(v) = var("LOOKAHEAD_WEIGHT") {
        s.weight = v;
    }
    if let Some(v) = var("LOOKAHEAD_HORIZON_SECS") {
        s.horizon_secs = v as u64;
    }
    if let Some(v) = var("LOOKAHEAD_WINDOW_SECS") {
        s.window_secs = v as u64;
    }
    if let Some(v) = var("LOOKAHEAD_REGION_KM") {
        s.region_km = v;
    }
    if let Some(v) = var("LOOKAHEAD_LOST_SALE_COST") {
        s.lost_sale_cost = v;
    }
    if let Some(v) = var("LOOKAHEAD_REFRESH_SECS") {
        s.refresh_secs = v as u64;
    }
}

/// Every figure of `stock` times `factor`, rounded down.
fn scaled(stock: &[StockSeed], factor: f64) -> Vec<StockSeed> {
    stock
        .iter()
        .map(|s| StockSeed {
            on_hand: (s.on_hand as f64 * factor) as u64,
            safety_stock: (s.safety_stock as f64 * factor) as u64,
            ..s.clone()
        })
        .collect()
}

/// The orders of a day, placed `SPACING_SECS` apart from 08:00.
fn placed(orders: &[dom_router::domain::Order]) -> OrdersFile {
    let start = today()
        .and_hms_opt(8, 0, 0)
        .expect("08:00")
        .and_utc()
        .timestamp_millis();
    let mut file = OrdersFile::from_orders("synthetic day", orders.iter().cloned());
    for (i, o) in file.orders.iter_mut().enumerate() {
        o.placed_at = Some(start + i as i64 * SPACING_SECS * 1000);
    }
    file
}

fn replayed(config: &Config, stock: &[StockSeed], file: &OrdersFile, kind: StrategyKind) -> Totals {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let options = replay::Options {
        strategy: Some(kind),
        start: file.first_placed_at().expect("placed orders"),
    };
    runtime
        .block_on(replay::run(config, stock, file, &options))
        .expect("replay")
        .summary
        .all
}

/// A lower bound on the cost to serve of the whole day planned knowing every order: per sku, a
/// transportation problem from the nodes' stock to every line of that sku, each unit from a
/// node the line's segment may use at the unit cost plus the parcel's fixed cost spread over
/// the order's units, or unfilled at the segment's penalty.
fn clairvoyant_bound(
    config: &Config,
    stock: &[StockSeed],
    orders: &[dom_router::domain::Order],
) -> f64 {
    let rules = config.rules();
    let view = dom_router::store::seed_view(stock);
    let network: &Network = &rules.network;
    // per sku: each line's units, its penalty, and its cost from each node
    type Line = (f64, f64, HashMap<String, f64>);
    let mut lines: BTreeMap<String, Vec<Line>> = BTreeMap::new();
    let none = HashMap::new();
    for order in orders {
        let Ok(admitted) = Admitted::admit(order, &rules) else {
            continue;
        };
        let segment = admitted.segment();
        let problem = Problem::build(&admitted, network, &view, &none, today());
        let units: u64 = order.lines.iter().map(|l| l.quantity).sum();
        for l in &order.lines {
            let costs: HashMap<String, f64> = problem
                .candidates
                .iter()
                .map(|c| {
                    (
                        c.node.id.clone(),
                        c.unit_cost() + c.fixed_cost() / units as f64,
                    )
                })
                .collect();
            lines.entry(l.sku.clone()).or_default().push((
                l.quantity as f64,
                segment.unfilled_penalty,
                costs,
            ));
        }
    }
    let mut bound = 0.0;
    for (sku, lines) in lines {
        let nodes: Vec<(&String, f64)> = view
            .get(&sku)
            .map(|m| {
                let mut v: Vec<(&String, f64)> =
                    m.iter().map(|(n, l)| (n, l.on_hand as f64)).collect();
                v.sort_by(|a, b| a.0.cmp(b.0));
                v
            })
            .unwrap_or_default();
        let problem = Transport {
            supply: nodes.iter().map(|(_, a)| *a).collect(),
            demand: lines.iter().map(|(q, _, _)| *q).collect(),
            cost: nodes
                .iter()
                .map(|(n, _)| {
                    lines
                        .iter()
                        .map(|(_, _, costs)| costs.get(*n).copied())
                        .collect()
                })
                .collect(),
            lost_sale: 0.0,
            lost_sale_by_region: lines.iter().map(|(_, p, _)| *p).collect(),
        };
        bound += problem.solve().cost;
    }
    bound
}
