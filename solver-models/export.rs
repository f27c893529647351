//! Writes the reference instances of `solver-models/instances/`: each sourcing decision as the
//! MIP in CPLEX LP format (`NAME.lp`), the same instance as JSON for the project's own tests
//! (`NAME.json`), and `optima.csv` with the optimal objective of each, solved by HiGHS (the
//! MIP alone) and checked against microlp and against the service's own solve path (the
//! search over node sets where it applies). Run with:
//!
//!     cargo run --release --example export-instances

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use dom_router::config::{Config, ConfigSource};
use dom_router::domain::{DeliveryMode, Network, Order, SegmentRules, SolveStatus};
use dom_router::sourcing::optimal::{Backend, solve, solve_by_mip};
use dom_router::sourcing::{Admitted, Instance, Problem};
use dom_router::store::StockView;
use dom_router::synth;

struct Case {
    name: String,
    instance: Instance,
}

fn case(
    name: &str,
    order: &Order,
    rules: &SegmentRules,
    network: &Network,
    stock: &StockView,
    capacity_used: &HashMap<String, u64>,
) -> Case {
    let today = NaiveDate::from_ymd_opt(2026, 3, 2).expect("a date");
    let admitted = Admitted::under(order, rules, network).unwrap_or_else(|e| panic!("{name}: {e}"));
    let problem = Problem::build(&admitted, network, stock, capacity_used, today);
    Case {
        name: name.to_owned(),
        instance: problem.instance().clone(),
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("solver-models/instances");
    std::fs::create_dir_all(&out).expect("output directory");
    let csv = std::fs::read_to_string(root.join("benches/data/cities.csv")).expect("cities.csv");
    let mut cases = Vec::new();

    // the demo network and its stock
    let demo = Config::load(ConfigSource::Embedded, std::iter::empty()).expect("demo config");
    let demo_stock = dom_router::store::seed_view(&demo.stock);
    let seg = |name: &str| demo.segments.get(name).expect("demo segment").clone();
    let iberia = synth::cities(&csv, &["ES", "PT"]);
    let mut demo_skus: Vec<String> = demo_stock.keys().cloned().collect();
    demo_skus.sort();
    let mut orders = synth::OrderGen::new(iberia, demo_skus, 11);
    let none = HashMap::new();
    let specs: [(&str, &str, usize); 11] = [
        ("standard-1-line", "standard", 1),
        ("vip-1-line", "vip", 1),
        ("standard-2-lines", "standard", 2),
        ("marketplace-3-lines", "marketplace", 3),
        ("vip-3-lines", "vip", 3),
        ("standard-5-lines", "standard", 5),
        ("marketplace-5-lines", "marketplace", 5),
        ("standard-10-lines", "standard", 10),
        ("vip-10-lines", "vip", 10),
        ("standard-20-lines", "standard", 20),
        ("standard-30-lines", "standard", 30),
    ];
    for (i, (name, segment, lines)) in specs.into_iter().enumerate() {
        let order = orders.order(&format!("demo-{i}"), segment, lines);
        let rules = seg(segment);
        cases.push(case(
            &format!("demo-{name}"),
            &order,
            &rules,
            &demo.network,
            &demo_stock,
            &none,
        ));
    }
    // kits, ship-complete, pickup with transfers, a deadline, capacity nearly used up
    let mut kit = orders.order("demo-kit", "vip", 4);
    for line in kit.lines.iter_mut().take(2) {
        line.group = Some("gift-set".into());
    }
    cases.push(case(
        "demo-vip-kit",
        &kit,
        &seg("vip"),
        &demo.network,
        &demo_stock,
        &none,
    ));
    let mut complete = orders.order("demo-complete", "standard", 3);
    complete.ship_complete = true;
    cases.push(case(
        "demo-standard-ship-complete",
        &complete,
        &seg("standard"),
        &demo.network,
        &demo_stock,
        &none,
    ));
    let mut pickup = orders.order("demo-pickup", "vip", 3);
    pickup.delivery = DeliveryMode::Pickup {
        node_id: "st-bilbao".into(),
    };
    cases.push(case(
        "demo-vip-pickup-transfer",
        &pickup,
        &seg("vip"),
        &demo.network,
        &demo_stock,
        &none,
    ));
    let mut rush = orders.order("demo-rush", "vip", 3);
    rush.deliver_by = NaiveDate::from_ymd_opt(2026, 3, 3);
    cases.push(case(
        "demo-vip-deliver-by",
        &rush,
        &seg("vip"),
        &demo.network,
        &demo_stock,
        &none,
    ));
    let busy: HashMap<String, u64> = demo
        .network
        .nodes()
        .iter()
        .map(|n| (n.id.clone(), n.daily_capacity_units.saturating_sub(3)))
        .collect();
    let tight = orders.order("demo-capacity", "standard", 6);
    cases.push(case(
        "demo-standard-capacity",
        &tight,
        &seg("standard"),
        &demo.network,
        &demo_stock,
        &busy,
    ));

    // synthetic networks at US cities, stock in about a fifth of the nodes
    let us = synth::cities(&csv, &["US"]);
    let rules = synth::standard_segment();
    for (nodes, lines) in [
        (50, 10),
        (200, 3),
        (200, 10),
        (200, 30),
        (1000, 3),
        (1000, 10),
        (1000, 30),
    ] {
        let network = synth::network(&us, nodes, 5);
        let skus = synth::skus(400);
        let stock = dom_router::store::seed_view(&synth::stock(&network, &skus, 0.2, 6));
        let mut us_orders = synth::OrderGen::new(us.clone(), skus, nodes as u64 + lines as u64);
        let order = us_orders.order("synthetic", "standard", lines);
        cases.push(case(
            &format!("us{nodes}-{lines}-lines"),
            &order,
            &rules,
            &network,
            &stock,
            &none,
        ));
    }
    // 1,000 nodes again: web orders of 1 to 4 lines, and skus held by one node in fifty, so
    // that three parcels cannot ship every unit and the penalty for unfilled units decides
    let network = synth::network(&us, 1000, 5);
    let skus = synth::skus(400);
    let scarce = dom_router::store::seed_view(&synth::stock(&network, &skus, 0.02, 6));
    let stock = dom_router::store::seed_view(&synth::stock(&network, &skus, 0.2, 6));
    let mut us_orders = synth::OrderGen::new(us.clone(), skus, 2026);
    for (name, lines, stock) in [
        ("us1000-2-lines", 2, &stock),
        ("us1000-4-lines", 4, &stock),
        ("us1000-4-lines-scarce", 4, &scarce),
        ("us1000-10-lines-scarce", 10, &scarce),
    ] {
        let order = us_orders.order("synthetic", "standard", lines);
        cases.push(case(name, &order, &rules, &network, stock, &none));
    }

    let mut optima =
        String::from("name,candidates,lines,objective,service_ms,highs_ms,microlp_ms,microlp\n");
    for (i, c) in cases.iter().enumerate() {
        let name = format!("{:02}-{}", i + 1, c.name);
        let t = Instant::now();
        let service = solve(&c.instance, Backend::Auto, Duration::from_secs(30));
        let service_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let highs = solve_by_mip(&c.instance, Backend::Highs, Duration::from_secs(120));
        let highs_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let micro = solve_by_mip(&c.instance, Backend::Microlp, Duration::from_secs(30));
        let micro_ms = t.elapsed().as_secs_f64() * 1e3;
        let proven =
            |s: SolveStatus| matches!(s, SolveStatus::Optimal | SolveStatus::ExactFastPath);
        for (solver, s) in [("service", &service), ("highs", &highs)] {
            assert!(
                proven(s.status),
                "{name}: {solver} did not prove optimality ({:?})",
                s.status
            );
        }
        for (solver, s) in [
            ("service", &service),
            ("highs", &highs),
            ("microlp", &micro),
        ] {
            c.instance
                .check(&s.units)
                .unwrap_or_else(|e| panic!("{name}: {solver}: {e}"));
        }
        let a = c.instance.cost(&highs.units);
        let mut agree = vec![("service", c.instance.cost(&service.units))];
        if proven(micro.status) {
            agree.push(("microlp", c.instance.cost(&micro.units)));
        }
        for (solver, b) in agree {
            assert!(
                (a - b).abs() < 1e-6,
                "{name}: highs {a} and {solver} {b} disagree"
            );
        }
        let micro_status = if proven(micro.status) {
            "optimal"
        } else {
            "not proven in 30 s"
        };
        std::fs::write(out.join(format!("{name}.lp")), c.instance.to_lp(&name)).expect("write lp");
        std::fs::write(
            out.join(format!("{name}.json")),
            serde_json::to_string(&c.instance).expect("json"),
        )
        .expect("write json");
        let _ = writeln!(
            optima,
            "{name},{},{},{a:.6},{service_ms:.2},{highs_ms:.2},{micro_ms:.2},{micro_status}",
            c.instance.cands.len(),
            c.instance.lines.len()
        );
        println!(
            "{name}: {} candidates, {} lines, optimum {a:.4}",
            c.instance.cands.len(),
            c.instance.lines.len()
        );
    }
    std::fs::write(out.join("optima.csv"), optima).expect("write optima.csv");
}
