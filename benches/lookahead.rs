//! Look-ahead against per-order sourcing on scarce and plentiful days, with a clairvoyant
//! reference. Each day is a replay (the engine on a private in-memory store, orders placed
//! `SPACING_SECS` apart, as `dom-router replay` makes it) by `nearest`, by `optimal` planning
//! each order for itself, by `optimal` with look-ahead at its defaults (demand learned from the
//! orders replayed so far, prices refreshed on the replay's clock), and by `optimal` with
//! look-ahead calibrated against the optimiser ([`calibrated`]). Cost to serve charges refused
//! orders' units at their segment's unfilled penalty.
//!
//! The clairvoyant reference knows the whole day. Its optimum is bracketed from below by the
//! better of two relaxations of the whole-day problem: one that drops node capacity,
//! protection, split penalties and integrality and spreads each parcel's fixed cost over the
//! order's units (never more than the parcel pays), which splits by sku into transportation
//! problems solved exactly; and the Lagrangian relaxation of the stock and capacity the orders
//! share, each order's problem solved exactly by the optimiser, prices raised by subgradient
//! steps from the first relaxation's ([`hindsight`], `CLAIRVOYANT_ROUNDS` rounds, 30 unless
//! set). From above, by the best plan of the day any run found, and the day planned order after
//! order with the best Lagrangian prices known in advance. "Gap closed" is how much of
//! per-order optimal's gap to the clairvoyant optimum a look-ahead run closes, from the lower
//! end of the bracket (a floor on the share) to the upper.
//!
//! Run with `cargo bench --bench lookahead`; `LOOKAHEAD_DAY=text` runs the days whose name
//! holds it, `LOOKAHEAD_*` sets any key of the section for both look-ahead runs,
//! `LOOKAHEAD_REFRESH_ONLY=1` only times a refresh from each day's demand, and
//! `LOOKAHEAD_ORACLE=1` also plans each day with calibration repeated every 60 orders on the
//! orders still to come, known ([`rolling_oracle`]): what a perfect forecast would give the
//! calibrated run.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use dom_router::config::{Config, ConfigSource, StockSeed};
use dom_router::domain::{Network, StrategyKind};
use dom_router::lookahead::calibrate::{Expected, Steps, Table, calibrate};
use dom_router::lookahead::flow::Transport;
use dom_router::replay::{self, OrdersFile, Totals};
use dom_router::sourcing::{Admitted, NodePrices, Problem, Strategies};
use dom_router::store::StockView;
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
    let only = std::env::var("LOOKAHEAD_DAY").ok();
    for (name, config, stock, orders) in days {
        if only.as_deref().is_some_and(|d| !name.contains(d)) {
            continue;
        }
        if std::env::var("LOOKAHEAD_REFRESH_ONLY").is_ok() {
            let (priced, took, calibrating) = refresh_from(config, &stock, &orders);
            eprintln!(
                "{name}: a refresh from the day's demand: {:.1} ms, {priced} node and sku pairs priced; calibrated in 20 rounds: {:.1} ms",
                took.as_secs_f64() * 1e3,
                calibrating.as_secs_f64() * 1e3
            );
            continue;
        }
        let file = placed(&orders);
        let end = file
            .orders
            .last()
            .and_then(|o| o.placed_at)
            .expect("placed orders");
        let run = |kind, lookahead: Option<bool>| {
            let mut config = config.clone();
            config.lookahead.enabled = lookahead.is_some();
            if lookahead == Some(true) {
                calibrated(
                    &mut config.lookahead,
                    file.first_placed_at().expect("placed"),
                    end,
                );
            }
            tune(&mut config.lookahead);
            let started = std::time::Instant::now();
            let totals = replayed(&config, &stock, &file, kind);
            (totals, started.elapsed())
        };
        let (nearest, _) = run(StrategyKind::Nearest, None);
        let (optimal, t_off) = run(StrategyKind::Optimal, None);
        let (ahead, t_on) = run(StrategyKind::Optimal, Some(false));
        let (tuned, t_tuned) = run(StrategyKind::Optimal, Some(true));
        let known = [nearest.cost, optimal.cost, ahead.cost, tuned.cost]
            .into_iter()
            .fold(f64::INFINITY, f64::min);
        let (relaxed, start) = clairvoyant_bound(config, &stock, &orders);
        let seen = hindsight(config, &stock, &orders, known, &start);
        // the forward plan without prices is the replay's: so the forward plan with them is
        // a plan as the service would make it
        assert!(
            (seen.forward_unpriced - optimal.cost).abs() < 0.01,
            "{name}: the forward plan without prices costs {:.2}, the replay {:.2}",
            seen.forward_unpriced,
            optimal.cost
        );
        if std::env::var("LOOKAHEAD_ORACLE").is_ok() {
            let rolled = rolling_oracle(config, &stock, &orders, 60, 40);
            eprintln!(
                "{name}: rolling calibration every 60 orders, 40 rounds, the orders to come known: {rolled:.2} ({:+.2}%)",
                100.0 * (rolled - optimal.cost) / optimal.cost
            );
        }
        let bound = relaxed.max(seen.bound);
        let best = known.min(seen.forward);
        let closed = |t: &Totals, star: f64| {
            let gap = optimal.cost - star;
            if gap <= 1e-9 {
                f64::NAN
            } else {
                100.0 * (optimal.cost - t.cost) / gap
            }
        };
        for (label, t) in [
            ("nearest", &nearest),
            ("optimal", &optimal),
            ("optimal + look-ahead", &ahead),
            ("optimal + look-ahead, calibrated", &tuned),
        ] {
            let against = 100.0 * (t.cost - optimal.cost) / optimal.cost;
            let share = |v: f64| {
                if v.is_finite() {
                    format!("{v:.0}%")
                } else {
                    "-".into()
                }
            };
            let gap = if std::ptr::eq(t, &ahead) || std::ptr::eq(t, &tuned) {
                format!("{} to {}", share(closed(t, bound)), share(closed(t, best)))
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
        eprintln!(
            "{name}: bound {:.2} from the relaxation, {:.2} from the Lagrangian ({} unproven); forward with its prices {:.2}; calibrated replay {:.1} s",
            relaxed,
            seen.bound,
            seen.unproven,
            seen.forward,
            t_tuned.as_secs_f64()
        );
        // one refresh from the whole day's demand, timed
        let (priced, took, calibrating) = refresh_from(config, &stock, &orders);
        eprintln!(
            "{name}: replay {:.1} s per-order, {:.1} s with look-ahead; a refresh from the day's demand: {:.1} ms, {priced} node and sku pairs priced; calibrated in 20 rounds: {:.1} ms",
            t_off.as_secs_f64(),
            t_on.as_secs_f64(),
            took.as_secs_f64() * 1e3,
            calibrating.as_secs_f64() * 1e3
        );
    }
}

/// Look-ahead's prices from every order of the day as the horizon's demand: how many node and
/// sku pairs are priced, how long computing them took, and how long calibrating them in 20
/// rounds took with it.
fn refresh_from(
    config: &Config,
    stock: &[StockSeed],
    orders: &[dom_router::domain::Order],
) -> (usize, std::time::Duration, std::time::Duration) {
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
    let mut tuned = settings.clone();
    tuned.calibration_rounds = 20;
    let strategies = Strategies::new(
        config.settings.sourcing.solver,
        std::time::Duration::from_millis(config.settings.sourcing.solve_budget_ms),
    );
    let started = std::time::Instant::now();
    dom_router::lookahead::Prices::calibrated(
        &config.network,
        &config.segments,
        &view,
        &demand,
        &tuned,
        0,
        &strategies,
        today(),
    );
    (
        prices.by_sku.values().map(|m| m.len()).sum(),
        took,
        started.elapsed(),
    )
}

/// `[lookahead]` as the environment tunes it for an experiment: `LOOKAHEAD_WEIGHT`,
/// `LOOKAHEAD_HORIZON_SECS`, `LOOKAHEAD_WINDOW_SECS`, `LOOKAHEAD_REGION_KM`,
/// `LOOKAHEAD_LOST_SALE_COST`, `LOOKAHEAD_REFRESH_SECS`, `LOOKAHEAD_REPLENISHED_AT`,
/// `LOOKAHEAD_CALIBRATION_ROUNDS`; the defaults otherwise.
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
    if let Ok(v) = std::env::var("LOOKAHEAD_REPLENISHED_AT") {
        s.replenished_at = Some(chrono::NaiveTime::parse_from_str(&v, "%H:%M").expect("HH:MM"));
    }
    if let Some(v) = var("LOOKAHEAD_CALIBRATION_ROUNDS") {
        s.calibration_rounds = v as u64;
    }
}

/// Look-ahead calibrated against the optimiser, for a day of orders placed from `first` to
/// `last`: stock replenished as the day ends, demand learned over the whole day so far, prices
/// computed every 15 minutes in 40 rounds of calibration.
fn calibrated(s: &mut dom_router::lookahead::Settings, first: i64, last: i64) {
    let end = chrono::DateTime::from_timestamp_millis(last + SPACING_SECS * 1000).expect("a time");
    s.replenished_at = Some(end.time());
    s.window_secs = ((last - first) / 1000).clamp(60, 604_800) as u64;
    s.refresh_secs = 900;
    s.calibration_rounds = 40;
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
/// the order's units, or unfilled at the segment's penalty; and the dual price of each node's
/// stock in it, where the Lagrangian relaxation starts.
fn clairvoyant_bound(
    config: &Config,
    stock: &[StockSeed],
    orders: &[dom_router::domain::Order],
) -> (f64, Table) {
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
    let mut prices = Table::new();
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
        let solved = problem.solve();
        bound += solved.cost;
        for ((node, _), price) in nodes.iter().zip(&solved.price) {
            if *price > 0.0 {
                prices
                    .entry(sku.clone())
                    .or_default()
                    .insert((*node).clone(), *price);
            }
        }
    }
    (bound, prices)
}

/// The clairvoyant optimum of a day, bracketed by Lagrangian relaxation of the stock and
/// capacity its orders share ([`calibrate`], started from the relaxation's prices above): the
/// best bound of `rounds` rounds from below; from above, the day planned forward, order after
/// order against the stock and capacity left as a replay plans them, with the prices of that
/// bound known in advance and charged whole (a plan of the whole day, so no cheaper than its
/// optimum).
struct Hindsight {
    bound: f64,
    /// The day planned forward with the prices.
    forward: f64,
    /// The day planned forward without prices: the replay's per-order figure, if the forward
    /// plan is planned as the replay plans it.
    forward_unpriced: f64,
    /// Solves of an order, over all rounds, not proven optimal (the bound assumes none).
    unproven: usize,
}

/// The day planned order after order against the stock and capacity left, each order with
/// `table`'s prices charged whole: its cost to serve, refused orders at their penalty.
fn forward(
    day: &[Expected<'_>],
    network: &Network,
    stock: &[StockSeed],
    table: &Table,
    strategies: &Strategies,
) -> f64 {
    forward_with(day, network, stock, strategies, |i, _, _| {
        (i == 0).then(|| table.clone())
    })
}

/// As [`forward`], with the prices `reprice` gives before each order (by its index, the stock
/// and the capacity used so far) where it gives any, else those in use.
fn forward_with(
    day: &[Expected<'_>],
    network: &Network,
    stock: &[StockSeed],
    strategies: &Strategies,
    mut reprice: impl FnMut(usize, &StockView, &HashMap<String, u64>) -> Option<Table>,
) -> f64 {
    let mut view = dom_router::store::seed_view(stock);
    let mut capacity: HashMap<String, u64> = HashMap::new();
    let kind = StrategyKind::Optimal;
    let mut cost = 0.0;
    let mut laid = NodePrices::default();
    for (i, e) in day.iter().enumerate() {
        if let Some(table) = reprice(i, &view, &capacity) {
            laid = NodePrices::new(&table, network);
        }
        let mut problem = Problem::build(&e.admitted, network, &view, &capacity, today());
        problem.charge_units(1.0, &laid);
        match problem.finish(kind, &strategies.get(kind).assign(&problem)) {
            Ok(plan) => {
                cost += plan.total_cost;
                for s in &plan.shipments {
                    for l in &s.lines {
                        if let Some(level) =
                            view.get_mut(&l.sku).and_then(|m| m.get_mut(&s.node_id))
                        {
                            level.reserved += l.quantity;
                        }
                        *capacity.entry(s.node_id.clone()).or_default() += l.quantity;
                    }
                }
            }
            Err(_) => cost += e.refusal(),
        }
    }
    cost
}

/// The day's orders, each known and standing for itself, with strategies given the time to
/// prove every plan: what the clairvoyant runs plan.
fn known_day<'a>(
    config: &Config,
    rules: &'a dom_router::domain::Rules,
    orders: &'a [dom_router::domain::Order],
) -> (Strategies, Vec<Expected<'a>>) {
    let strategies = Strategies::new(
        config.settings.sourcing.solver,
        std::time::Duration::from_secs(30),
    );
    let day = orders
        .iter()
        .filter_map(|o| {
            Some(Expected {
                admitted: Admitted::admit(o, rules).ok()?,
                weight: 1.0,
            })
        })
        .collect();
    (strategies, day)
}

/// Each node's daily capacity less the units `used` says it has shipped, as calibration's
/// capacity rows take it.
fn capacity_left(network: &Network, used: &HashMap<String, u64>) -> HashMap<String, f64> {
    network
        .nodes()
        .iter()
        .map(|n| {
            let used = used.get(&n.id).copied().unwrap_or(0);
            (
                n.id.clone(),
                n.daily_capacity_units.saturating_sub(used) as f64,
            )
        })
        .collect()
}

/// The day planned forward with prices calibrated again every `every` orders, in `rounds`
/// rounds, from the orders still to come, known: how much of the clairvoyant gap rolling
/// calibration closes with a perfect forecast (`LOOKAHEAD_ORACLE=1`).
fn rolling_oracle(
    config: &Config,
    stock: &[StockSeed],
    orders: &[dom_router::domain::Order],
    every: usize,
    rounds: usize,
) -> f64 {
    let rules = config.rules();
    let network: &Network = &rules.network;
    let (strategies, day) = known_day(config, &rules, orders);
    let mut last = Table::new();
    forward_with(&day, network, stock, &strategies, |i, view, used| {
        if i % every != 0 {
            return None;
        }
        let left = capacity_left(network, used);
        let steps = Steps {
            rounds,
            theta: 0.1,
            upper: None,
        };
        let found = calibrate(
            &day[i..],
            network,
            view,
            &left,
            &last,
            steps,
            &strategies,
            today(),
            1,
        );
        last = found.prices.clone();
        Some(found.prices)
    })
}

fn hindsight(
    config: &Config,
    stock: &[StockSeed],
    orders: &[dom_router::domain::Order],
    known: f64,
    start: &Table,
) -> Hindsight {
    let rounds = std::env::var("CLAIRVOYANT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let rules = config.rules();
    let network: &Network = &rules.network;
    let (strategies, day) = known_day(config, &rules, orders);
    let capacity = capacity_left(network, &HashMap::new());
    let view = dom_router::store::seed_view(stock);
    let steps = Steps {
        rounds,
        theta: 0.1,
        upper: Some(known),
    };
    let found = calibrate(
        &day,
        network,
        &view,
        &capacity,
        start,
        steps,
        &strategies,
        today(),
        2,
    );
    Hindsight {
        bound: found.bound,
        forward: forward(&day, network, stock, &found.prices, &strategies),
        forward_unpriced: forward(&day, network, stock, &Table::new(), &strategies),
        unproven: found.unproven,
    }
}
