//! Look-ahead as a running service on the memory store, seen through real gRPC quotes:
//! `[lookahead]` turned on, refused when bad and weighted to nothing by editing `segments.toml`
//! while it serves, and prices computed again when the stock moves.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, line, order};
use dom_router::config::{Config, ConfigSource};

/// The Guadalajara quote of look-ahead's test case (see `common::guadalajara_quote`).
async fn quoted(server: &TestServer) -> (String, String, f64) {
    common::guadalajara_quote(server.sourcing(), "LA-X").await
}

/// As [`quoted`], for sku `LA-Y`.
async fn quoted_y(server: &TestServer) -> (String, String, f64) {
    common::guadalajara_quote(server.sourcing(), "LA-Y").await
}

/// Six one-unit orders to Madrid, each reserved and released.
async fn madrid_demand(server: &TestServer, round: usize) {
    common::madrid_demand(server.sourcing(), "LA-X", &format!("m{round}-"), 6).await;
}

/// A server on the memory store with the demo network and segments in a directory of their
/// own, reloaded every 50 ms, with `section` in place of the shipped `[lookahead]` (none: the
/// shipped one, off), and the function that writes another section into its `segments.toml`.
async fn serving_with(section: Option<&str>) -> (TestServer, impl Fn(&str), tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for file in ["network.toml", "segments.toml"] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config")
                .join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let segments = dir.path().join("segments.toml");
    let shipped = std::fs::read_to_string(&segments).unwrap();
    let with = move |section: &str| {
        let text = shipped.replacen("[lookahead]\nenabled = false", section, 1);
        assert_ne!(text, shipped, "segments.toml has a [lookahead] section");
        std::fs::write(&segments, text).unwrap();
    };
    if let Some(section) = section {
        with(section);
    }
    let mut config =
        Config::load(ConfigSource::Dir(dir.path().into()), std::iter::empty()).unwrap();
    config.settings.store.seed_stock = false;
    config.settings.server.reload_interval_ms = 50;
    let (server, _) = TestServer::serve(config, Some(ConfigSource::Dir(dir.path().into()))).await;
    (server, with, dir)
}

/// The version of the rules a quote is made with.
async fn rules_version(server: &TestServer) -> String {
    let mut o = order("v", "vip", vec![line("l1", "LA-X", 1)]);
    o.destination = Some(common::in_spain(common::MADRID.0, common::MADRID.1));
    common::quoted_plan(server.sourcing(), o)
        .await
        .rules_version
}

/// Waits for rules other than `before` to be in force; their version.
async fn reloaded(server: &TestServer, before: &str) -> String {
    let started = Instant::now();
    loop {
        let now = rules_version(server).await;
        if now != before {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the rules were not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls quotes until `done` holds of one, for up to 10 s.
async fn until(server: &TestServer, what: &str, done: impl Fn(&(String, String, f64)) -> bool) {
    until_of("LA-X", server, what, done).await
}

/// As [`until`], for quotes of `sku`.
async fn until_of(
    sku: &str,
    server: &TestServer,
    what: &str,
    done: impl Fn(&(String, String, f64)) -> bool,
) {
    let started = Instant::now();
    loop {
        let q = common::guadalajara_quote(server.sourcing(), sku).await;
        if done(&q) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: last quote {q:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_ahead_is_turned_on_tuned_and_off_by_the_rules_while_serving() {
    let (server, with, _dir) = serving_with(None).await;
    server
        .stock(&[("wh-getafe", "LA-X", 2, 0), ("wh-zaragoza", "LA-X", 40, 0)])
        .await;

    // off: Guadalajara ships from Getafe, nearest, whatever Madrid asks for
    madrid_demand(&server, 0).await;
    let (node, _, opportunity) = quoted(&server).await;
    assert_eq!((node.as_str(), opportunity), ("wh-getafe", 0.0));

    // on: Madrid's demand is learned, and Getafe's units are kept for it
    let before = rules_version(&server).await;
    with("[lookahead]\nenabled = true\nrefresh_secs = 1");
    let on = reloaded(&server, &before).await;
    // the demand placed while it was off was not learned: a refresh later, nothing is kept
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(quoted(&server).await.0, "wh-getafe");
    madrid_demand(&server, 1).await;
    until(&server, "Getafe's units kept", |(node, getafe, _)| {
        node == "wh-zaragoza" && getafe.starts_with("kept for later demand: +")
    })
    .await;

    // a bad section is refused, and the rules in force stay: Getafe's units still kept
    with("[lookahead]\nenabled = true\nrefresh_secs = 1\nweight = -2");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rules_version(&server).await, on);
    let (node, getafe, _) = quoted(&server).await;
    assert_eq!(node, "wh-zaragoza", "{getafe}");

    // weight 0: plans as without look-ahead
    with("[lookahead]\nenabled = true\nrefresh_secs = 1\nweight = 0");
    until(&server, "weight 0", |(node, _, opportunity)| {
        node == "wh-getafe" && *opportunity == 0.0
    })
    .await;

    // and still learns demand: Madrid's demand for another sku, placed at weight 0, keeps
    // Getafe's units of it once the weight is back
    server
        .stock(&[("wh-getafe", "LA-Y", 2, 0), ("wh-zaragoza", "LA-Y", 40, 0)])
        .await;
    common::madrid_demand(server.sourcing(), "LA-Y", "w0-", 6).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(quoted_y(&server).await.0, "wh-getafe");
    with("[lookahead]\nenabled = true\nrefresh_secs = 1");
    until_of(
        "LA-Y",
        &server,
        "demand learned at weight 0",
        |(node, getafe, _)| node == "wh-zaragoza" && getafe.starts_with("kept for later demand: +"),
    )
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_stock_change_prices_again_before_the_interval_is_up() {
    let (server, with, _dir) =
        serving_with(Some("[lookahead]\nenabled = true\nrefresh_secs = 1")).await;
    let level = |getafe: i64| {
        let server = &server;
        async move {
            server
                .stock(&[
                    ("wh-getafe", "LA-X", getafe, 0),
                    ("wh-zaragoza", "LA-X", 40, 0),
                ])
                .await
        }
    };
    level(2).await;
    madrid_demand(&server, 0).await;
    until(&server, "Getafe's units kept", |(node, _, _)| {
        node == "wh-zaragoza"
    })
    .await;
    // prices now every hour, or once a node's ATS moves 10 units from what they were computed
    // against
    let before = rules_version(&server).await;
    with("[lookahead]\nenabled = true\nrefresh_secs = 3600\nrefresh_on_change_units = 10");
    reloaded(&server, &before).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(quoted(&server).await.0, "wh-zaragoza");
    // Getafe gets more than Madrid will ask for: priced again at once, nothing to keep
    level(1_000).await;
    until(
        &server,
        "priced again after the change",
        |(node, _, opportunity)| node == "wh-getafe" && *opportunity == 0.0,
    )
    .await;
    server.shutdown().await;
}
