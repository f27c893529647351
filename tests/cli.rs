//! The `dom-router` binary as a process: config checking, replaying orders against configs,
//! and serving until SIGTERM.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_dom-router");

#[test]
fn check_config_accepts_the_shipped_config() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let out = Command::new(BIN)
        .args(["check-config", dir])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nodes: 31"), "{stdout}");
    // the thresholds of alerts.toml, as they are in force
    assert!(
        stdout.contains("APP-* at every store node: low at ATS <= 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("* network-wide as every segment sees it: low at ATS <= 50"),
        "{stdout}"
    );
    assert!(stdout.contains("threshold + 2 (hysteresis)"), "{stdout}");
    // look-ahead, shipped off
    assert!(stdout.contains("\nlook-ahead: off\n"), "{stdout}");
    // how long standard's units may wait for supply
    assert!(
        stdout.contains("unfilled Backorder, waiting at most 14 days"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

#[test]
fn check_config_names_the_file_and_field_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let network =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/network.toml"))
            .unwrap()
            .replacen("kind = \"store\"", "kind = \"shop\"", 1);
    std::fs::write(dir.path().join("network.toml"), network).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/segments.toml"),
        dir.path().join("segments.toml"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("network.toml"), "{stderr}");
    assert!(stderr.contains("unknown variant `shop`"), "{stderr}");
}

#[test]
fn check_config_refuses_a_bad_environment_override() {
    let out = Command::new(BIN)
        .arg("check-config")
        .env("DOM_ROUTER__HOLDS__MAX_TTL_SECS", "-1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DOM_ROUTER__HOLDS__MAX_TTL_SECS"),
        "{stderr}"
    );
    assert!(stderr.contains("holds.max_ttl_secs"), "{stderr}");
}

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
const DEMO_ORDERS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/benches/data/orders-demo.jsonl"
);

fn replay(args: &[&str]) -> Output {
    Command::new(BIN).arg("replay").args(args).output().unwrap()
}

/// The replay's JSON report, after checking it succeeded.
fn replay_json(args: &[&str]) -> Value {
    let out = replay(&[args, &["--json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A copy of the shipped config with `edit` applied to each file's text, by file name.
fn config_copy(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["network.toml", "segments.toml", "server.toml", "stock.csv"] {
        let text = std::fs::read_to_string(Path::new(CONFIG).join(file)).unwrap();
        std::fs::write(dir.path().join(file), edit(file, text)).unwrap();
    }
    dir
}

/// The demo orders as JSON values, one per line.
fn demo_orders() -> Vec<Value> {
    std::fs::read_to_string(DEMO_ORDERS)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn replay_prints_the_metrics_of_the_demo_orders() {
    let orders = demo_orders();
    let units: u64 = orders
        .iter()
        .flat_map(|o| o["lines"].as_array().unwrap())
        .map(|l| count(&l["quantity"]))
        .sum();

    let out = replay(&["--orders", DEMO_ORDERS, "--config", CONFIG]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |label: &str| -> String {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} in\n{stdout}"));
        line[label.len()..].trim().to_owned()
    };
    assert_eq!(value("orders "), orders.len().to_string());
    assert_eq!(value("units "), units.to_string());
    for label in [
        "cost to serve ",
        "  fulfilment ",
        "  unfilled units' penalty ",
        "  refused orders' penalty ",
        "per order ",
        "shipments per order ",
        "split rate ",
        "unfilled units ",
        "refused orders ",
    ] {
        value(label);
    }
    for segment in ["marketplace", "standard", "vip"] {
        assert!(
            stdout.contains(&format!("\nsegment {segment}\n")),
            "{stdout}"
        );
    }

    let report = replay_json(&["--orders", DEMO_ORDERS, "--config", CONFIG]);
    let base = &report["base"];
    assert_eq!(count(&base["orders"]), orders.len() as u64);
    assert_eq!(count(&base["units"]), units);
    assert_eq!(
        count(&base["planned_orders"]) + count(&base["refused_orders"]),
        orders.len() as u64
    );
    let by_reason: u64 = base["refused_by_reason"]
        .as_object()
        .unwrap()
        .values()
        .map(count)
        .sum();
    assert_eq!(by_reason, count(&base["refused_orders"]));
    let segments = base["segments"].as_object().unwrap();
    for key in ["orders", "units", "unfilled_units", "refused_orders"] {
        let sum: u64 = segments.values().map(|s| count(&s[key])).sum();
        assert_eq!(sum, count(&base[key]), "{key}");
    }
    for segment in ["marketplace", "standard", "vip"] {
        let in_file = orders.iter().filter(|o| o["segment"] == segment).count() as u64;
        assert_eq!(count(&segments[segment]["orders"]), in_file, "{segment}");
    }
    assert!(base["cost_to_serve"].as_f64().unwrap() > 0.0);
    assert!(report.get("against").is_none());
    assert_costs_add_up(base);
}

fn money(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not an amount: {v}"))
}

/// A side of a JSON report: the headline cost is its three parts, and the sum of its orders'
/// costs; each refused order is charged its units at its segment's unfilled penalty (the demo's:
/// vip 50, standard 40, marketplace 25).
fn assert_costs_add_up(side: &Value) {
    let near = |a: f64, b: f64, what: &str| assert!((a - b).abs() < 0.05, "{what}: {a} vs {b}");
    let cost = money(&side["cost_to_serve"]);
    near(
        cost,
        money(&side["fulfilment_cost"])
            + money(&side["unfilled_penalty"])
            + money(&side["refusal_penalty"]),
        "parts",
    );
    let decisions = side["decisions"].as_array().unwrap();
    assert_eq!(decisions.len() as u64, count(&side["orders"]));
    near(
        cost,
        decisions.iter().map(|d| money(&d["cost_to_serve"])).sum(),
        "orders",
    );
    let mut refused = 0;
    let mut charged = 0.0;
    for d in decisions {
        match d["outcome"].as_str().unwrap() {
            "refused" => {
                refused += 1;
                let penalty = match d["segment"].as_str().unwrap() {
                    "vip" => 50.0,
                    "standard" => 40.0,
                    "marketplace" => 25.0,
                    other => panic!("segment {other}"),
                };
                let due = count(&d["units"]) as f64 * penalty;
                near(money(&d["cost_to_serve"]), due, "a refused order");
                charged += due;
                assert!(d["reason"].is_string() && d["refusal"].is_string(), "{d}");
            }
            "planned" => {
                let shipped: u64 = d["shipments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|s| s["lines"].as_array().unwrap())
                    .map(|l| count(&l["quantity"]))
                    .sum();
                let unfilled: u64 = d["unfilled"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| count(&l["quantity"]))
                    .sum();
                assert_eq!(shipped + unfilled, count(&d["units"]), "{d}");
                let parts: f64 = d["cost"].as_object().unwrap().values().map(money).sum();
                near(money(&d["cost_to_serve"]), parts, "a plan's parts");
            }
            other => panic!("outcome {other}"),
        }
    }
    assert_eq!(refused, count(&side["refused_orders"]));
    near(money(&side["refusal_penalty"]), charged, "refusals");
}

#[test]
fn a_rule_that_refuses_more_orders_never_looks_cheaper_for_it() {
    // vip may ship only whole orders from one node: more vip orders are refused
    let one_parcel = config_copy(|file, text| match file {
        "segments.toml" => text.replacen("max_shipments = 3", "max_shipments = 1", 1),
        _ => text,
    });
    let report = replay_json(&[
        "--orders",
        DEMO_ORDERS,
        "--config",
        CONFIG,
        "--against",
        one_parcel.path().to_str().unwrap(),
    ]);
    let (base, against) = (&report["base"], &report["against"]);
    assert_costs_add_up(base);
    assert_costs_add_up(against);
    let refused = |side: &Value| count(&side["segments"]["vip"]["refused_orders"]);
    assert!(refused(against) > refused(base), "{}", report["difference"]);
    let cost = |side: &Value, key: &str| money(&side[key]);
    assert!(
        cost(against, "refusal_penalty") > cost(base, "refusal_penalty"),
        "{}",
        report["difference"]
    );
    assert!(
        cost(against, "cost_to_serve") > cost(base, "cost_to_serve"),
        "{}",
        report["difference"]
    );
}

#[test]
fn two_strategies_compare_on_one_config_each_refusing_for_its_own_reason() {
    let report = replay_json(&[
        "--orders",
        DEMO_ORDERS,
        "--config",
        CONFIG,
        "--strategy",
        "optimal",
        "--against-strategy",
        "nearest",
    ]);
    let (base, against) = (&report["base"], &report["against"]);
    assert_eq!(base["strategy"], "optimal");
    assert_eq!(against["strategy"], "nearest");
    assert_eq!(base["config"], against["config"]);
    assert_costs_add_up(base);
    assert_costs_add_up(against);
    assert!(
        money(&against["cost_to_serve"]) > money(&base["cost_to_serve"]),
        "{}",
        report["difference"]
    );
    // nearest's refusals where the stock was there in all are its own, never the stock's
    let reasons = |side: &Value| -> Vec<String> {
        side["refused_by_reason"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let nearest = reasons(against);
    assert!(
        nearest
            .iter()
            .any(|r| r == "no partial plans: nearest found no plan within the limit"),
        "{nearest:?}"
    );
    assert!(
        !nearest.iter().any(|r| r.contains("too spread")),
        "{nearest:?}"
    );
    assert!(
        !reasons(base).iter().any(|r| r.contains("found no plan")),
        "{:?}",
        reasons(base)
    );
    // an order nearest refuses for its own reason, optimal ships in one replay or the other
    let decisions = |side: &Value| side["decisions"].as_array().unwrap().clone();
    let (optimal, nearest) = (decisions(base), decisions(against));
    assert!(
        optimal.iter().zip(&nearest).any(|(o, n)| {
            n["reason"] == "no partial plans: nearest found no plan within the limit"
                && o["outcome"] == "planned"
        }),
        "no order nearest refused was planned by optimal"
    );

    let out = replay(&[
        "--orders",
        DEMO_ORDERS,
        "--strategy",
        "optimal",
        "--against-strategy",
        "nearest",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("base:    embedded demo config, strategy optimal"),
        "{stdout}"
    );
    assert!(
        stdout.contains("against: embedded demo config, strategy nearest"),
        "{stdout}"
    );
}

#[test]
fn replay_against_a_copy_without_a_warehouse_moves_every_order_it_served() {
    let without = config_copy(|file, text| match file {
        "network.toml" => text.replace(
            "id = \"wh-getafe\"\n",
            "id = \"wh-getafe\"\nenabled = false\n",
        ),
        _ => text,
    });
    let against = without.path().to_str().unwrap();
    let report = replay_json(&[
        "--orders",
        DEMO_ORDERS,
        "--config",
        CONFIG,
        "--against",
        against,
    ]);
    let served = count(&report["base"]["shipments_by_node"]["wh-getafe"]);
    assert!(served > 0, "the demo orders use wh-getafe");
    assert!(
        report["against"]["shipments_by_node"]
            .get("wh-getafe")
            .is_none()
    );
    // each order ships at most one parcel from a node, so each parcel is an order that moved
    let changed = count(&report["changed_orders"]);
    assert!(
        changed >= served,
        "{changed} changed, {served} served by wh-getafe"
    );
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len() as u64, changed);
    let from_getafe = changes
        .iter()
        .filter(|c| c["before"].as_str().unwrap().contains("wh-getafe "))
        .inspect(|c| assert!(!c["after"].as_str().unwrap().contains("wh-getafe"), "{c}"))
        .count() as u64;
    assert_eq!(from_getafe, served);
    assert_eq!(report["difference"]["orders"]["absolute"], 0);
    let cost = |side: &str| report[side]["cost_to_serve"].as_f64().unwrap();
    assert!(
        cost("against") > cost("base"),
        "the next cheapest nodes cost more"
    );

    let out = replay(&[
        "--orders",
        DEMO_ORDERS,
        "--config",
        CONFIG,
        "--against",
        against,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("decisions changed: {changed} of ")),
        "{stdout}"
    );
    assert!(stdout.contains("wh-getafe"), "{stdout}");
}

#[test]
fn replay_against_a_huge_split_penalty_splits_fewer_orders() {
    let costly = config_copy(|file, text| match file {
        "segments.toml" => text
            .lines()
            .map(|l| {
                if l.starts_with("split_penalty") {
                    "split_penalty = 1000.0"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => text,
    });
    let report = replay_json(&[
        "--orders",
        DEMO_ORDERS,
        "--config",
        CONFIG,
        "--against",
        costly.path().to_str().unwrap(),
    ]);
    let split = |side: &str| report[side]["split_rate"].as_f64().unwrap();
    assert!(split("base") > 0.0);
    assert!(split("against") < split("base"), "{report:#}");
    assert!(
        report["difference"]["split_rate"]["absolute"]
            .as_f64()
            .unwrap()
            < 0.0
    );
    assert!(count(&report["changed_orders"]) > 0);
}

#[test]
fn replay_against_the_same_config_changes_nothing() {
    let same = config_copy(|_, text| text);
    let args = [
        "--orders",
        DEMO_ORDERS,
        "--config",
        CONFIG,
        "--against",
        same.path().to_str().unwrap(),
    ];
    let report = replay_json(&args);
    assert_eq!(report["changed_orders"], 0);
    assert_eq!(report["changes"].as_array().unwrap().len(), 0);
    fn all_zero(v: &Value) -> bool {
        match v {
            Value::Object(m) => match m.get("absolute") {
                Some(a) => a.as_f64() == Some(0.0),
                None => m.values().all(all_zero),
            },
            _ => true,
        }
    }
    assert!(all_zero(&report["difference"]), "{report:#}");
    assert_eq!(
        report["base"]["cost_to_serve"],
        report["against"]["cost_to_serve"]
    );
    let out = replay(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("decisions changed: 0 of "), "{stdout}");
}

#[test]
fn replay_from_no_stock_ships_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "sku,node,on_hand,safety_stock\n").unwrap();
    let report = replay_json(&["--orders", DEMO_ORDERS, "--stock", empty.to_str().unwrap()]);
    let base = &report["base"];
    assert_eq!(count(&base["unfilled_units"]), count(&base["units"]));
    assert_eq!(base["shipments_per_order"].as_f64(), Some(0.0));
    // vip refuses partial plans: every vip order is refused
    assert_eq!(
        count(&base["segments"]["vip"]["refused_orders"]),
        count(&base["segments"]["vip"]["orders"])
    );
}

#[test]
fn replay_names_the_line_and_field_of_a_bad_order_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(DEMO_ORDERS)
        .unwrap()
        .lines()
        .take(3)
        .map(str::to_owned)
        .collect();
    let mut bad: Value = serde_json::from_str(&lines[2]).unwrap();
    bad["lines"][0]["quantity"] = 0.into();
    std::fs::write(&path, format!("{}\n{}\n{bad}\n", lines[0], lines[1])).unwrap();
    let out = replay(&["--orders", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("orders.jsonl:3: lines[0].quantity: must be at least 1"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    // a segment the config does not know is refused as the API refuses it
    let mut unknown: Value = serde_json::from_str(&lines[1]).unwrap();
    unknown["segment"] = "gold".into();
    std::fs::write(&path, format!("{}\n{unknown}\n", lines[0])).unwrap();
    let out = replay(&["--orders", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("orders.jsonl:2: segment: unknown segment \"gold\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_answers_and_stops_cleanly_on_sigterm() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DOM_ROUTER__METRICS__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        let attempt = async {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .ok()?
                    .connect()
                    .await
                    .ok()?;
            let mut health = HealthClient::new(channel);
            let r = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()?;
            Some(r.into_inner().status())
        };
        match attempt.await {
            Some(ServingStatus::Serving) => break ServingStatus::Serving,
            _ if started.elapsed() > Duration::from_secs(30) => break ServingStatus::Unknown,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(status, ServingStatus::Serving);
    // SIGHUP on the embedded config reloads nothing and must not end the process
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP ended the server"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break Some(exit);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let exit = exit.expect("server exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const CHECKOUT_TOKEN: &str = "cli-checkout-0123456789abcdef";
const FEED_TOKEN: &str = "cli-feed-0123456789abcdef";

/// A quote for one unit of a demo sku, with the checkout token: the rules version and nodes.
async fn quote_version(port: u16, token: &str) -> Result<(String, Vec<String>), tonic::Status> {
    use dom_router::api::pb;
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(pb::QuoteRequest {
        order: Some(common::order(
            "cli-quote",
            "standard",
            vec![common::line("l1", "APP-0001", 1)],
        )),
        strategy: 0,
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let plan = pb::sourcing_client::SourcingClient::new(channel)
        .quote(request)
        .await?
        .into_inner()
        .plan
        .unwrap();
    Ok(common::version_and_nodes(plan))
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: m\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[tokio::test]
async fn sighup_reloads_the_rules_and_metrics_and_logs_show_it_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for file in ["network.toml", "segments.toml", "stock.csv"] {
        std::fs::copy(root.join(file), dir.path().join(file)).unwrap();
    }
    let (port, metrics) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("server.toml"),
        format!(
            "[server]\nreload_interval_ms = 0\nwatch_config = false\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n\
             [auth]\nmode = \"tokens\"\ntokens_file = \"tokens.toml\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokens.toml"),
        format!(
            "[[client]]\nname = \"web\"\nrole = \"checkout\"\ntoken = \"{CHECKOUT_TOKEN}\"\n\n\
             [[client]]\nname = \"wms\"\nrole = \"feed\"\ntoken = \"{FEED_TOKEN}\"\n"
        ),
    )
    .unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();

    let started = Instant::now();
    let (first, nodes) = loop {
        match quote_version(port, CHECKOUT_TOKEN).await {
            Ok(answer) => break answer,
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                let _ = child.kill();
                panic!("no answer: {e}");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let denied = quote_version(port, FEED_TOKEN).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert_eq!(nodes.len(), 1);

    // take the chosen node out; with polling and file events off, only SIGHUP reloads
    let network = std::fs::read_to_string(dir.path().join("network.toml")).unwrap();
    std::fs::write(
        dir.path().join("network.toml"),
        common::disable_node(&network, &nodes[0]),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(quote_version(port, CHECKOUT_TOKEN).await.unwrap().0, first);
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let (second, moved) = loop {
        let answer = quote_version(port, CHECKOUT_TOKEN).await.unwrap();
        if answer.0 != first || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(second, first, "SIGHUP did not reload the rules");
    assert!(!moved.contains(&nodes[0]), "the disabled node still ships");

    let scraped = http_get(&format!("127.0.0.1:{metrics}"), "/metrics");
    assert!(
        scraped.starts_with("HTTP/1.1 200") || scraped.starts_with("HTTP/1.0 200"),
        "{scraped}"
    );
    assert!(
        scraped.contains("dom_router_rules_reloads_total{result=\"applied\"} 1"),
        "{scraped}"
    );
    assert!(
        scraped.contains(&format!("dom_router_rules_info{{version=\"{second}\"}} 1")),
        "{scraped}"
    );
    assert!(
        scraped
            .contains("dom_router_requests_total{method=\"Quote\",code=\"PERMISSION_DENIED\"} 1"),
        "{scraped}"
    );
    assert!(http_get(&format!("127.0.0.1:{metrics}"), "/other").contains(" 404 "));

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("rules changed"), "{logs}");
    assert!(logs.contains("SIGHUP"), "{logs}");
    assert!(logs.contains("calls need a client token"), "{logs}");
    for token in [CHECKOUT_TOKEN, FEED_TOKEN] {
        assert!(!logs.contains(token), "a token reached the logs");
    }
}

#[test]
fn check_config_reads_the_tokens_and_tls_files_as_serve_would() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for file in ["network.toml", "segments.toml"] {
        std::fs::copy(root.join(file), dir.path().join(file)).unwrap();
    }
    let check = |server_toml: &str| {
        std::fs::write(dir.path().join("server.toml"), server_toml).unwrap();
        let out = Command::new(BIN)
            .arg("check-config")
            .arg(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    std::fs::write(
        dir.path().join("tokens.toml"),
        "[[client]]\nname = \"web\"\nrole = \"buyer\"\ntoken = \"a-secret-that-is-long\"\n",
    )
    .unwrap();
    let (code, stderr) = check("[auth]\nmode = \"tokens\"\ntokens_file = \"tokens.toml\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("client[0].role"), "{stderr}");
    assert!(!stderr.contains("a-secret-that-is-long"), "{stderr}");

    std::fs::write(dir.path().join("tls.crt"), "not a certificate\n").unwrap();
    std::fs::write(dir.path().join("tls.key"), "not a key\n").unwrap();
    let (code, stderr) = check("[tls]\ncert_file = \"tls.crt\"\nkey_file = \"tls.key\"\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("tls.cert_file"), "{stderr}");
    // secrets mounted only where the server runs are named, not failed
    std::fs::write(
        dir.path().join("server.toml"),
        "[tls]\ncert_file = \"/nonexistent/tls.crt\"\nkey_file = \"/nonexistent/tls.key\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("not checked (not present here): /nonexistent/tls.crt"),
        "{stdout}"
    );
}
