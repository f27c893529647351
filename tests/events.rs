//! `dom.v1.Events/Watch` over the real gRPC API: history from a cursor then live changes,
//! filters, resuming, and the errors of bad requests.

mod common;

use std::time::Duration;

use common::*;
use dom_router::api::pb;
use pb::events_client::EventsClient;
use tokio_stream::StreamExt;
use tonic::Code;

/// The demo config without low-stock thresholds, so that only the changes a test makes come
/// into the log (out of stock is still watched, and none of these tests runs out).
fn quiet_config() -> dom_router::config::Config {
    let mut config = demo_config();
    config.alerts = Default::default();
    config
}

fn watch(after: &str) -> pb::WatchRequest {
    pb::WatchRequest {
        after: after.into(),
        ..Default::default()
    }
}

async fn next(stream: &mut tonic::Streaming<pb::Event>) -> pb::Event {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream goes on")
        .expect("an event, not an error")
}

async fn reserve(server: &TestServer, id: &str) -> pb::Reservation {
    server
        .sourcing()
        .reserve(reserve_request(order(
            id,
            "standard",
            vec![line("1", "TEE-1", 2)],
        )))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap()
}

#[tokio::test]
async fn a_watcher_gets_history_then_live_changes_and_resumes_where_it_left_off() {
    let server = TestServer::start_with(quiet_config()).await;
    server.stock(&[("wh-sevilla", "TEE-1", 50, 0)]).await;
    let mut events = EventsClient::new(server.channel.clone());
    let mut all = events.watch(watch("0-0")).await.unwrap().into_inner();
    let first = next(&mut all).await;
    assert_eq!(first.kind, pb::EventKind::StockChanged as i32);
    match first.change {
        Some(pb::event::Change::Stock(s)) => {
            assert_eq!(s.sku, "TEE-1");
            let level = s.level.unwrap();
            assert_eq!(
                (level.node_id.as_str(), level.on_hand, level.ats),
                ("wh-sevilla", 50, 50)
            );
        }
        other => panic!("{other:?}"),
    }
    // only reservation events of one order, from now
    let mut only_o1 = events
        .watch(pb::WatchRequest {
            order_ids: vec!["o-1".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    reserve(&server, "o-2").await;
    let r = reserve(&server, "o-1").await;
    let created = next(&mut only_o1).await;
    assert_eq!(created.kind, pb::EventKind::ReservationCreated as i32);
    match &created.change {
        Some(pb::event::Change::Reservation(c)) => {
            assert_eq!(
                (c.order_id.as_str(), c.segment.as_str()),
                ("o-1", "standard")
            );
            assert_eq!(c.state, pb::ReservationState::Held as i32);
            assert_eq!(c.allocations, r.allocations);
        }
        other => panic!("{other:?}"),
    }
    server
        .sourcing()
        .commit(pb::CommitRequest {
            order_id: "o-1".into(),
        })
        .await
        .unwrap();
    let committed = next(&mut only_o1).await;
    assert_eq!(committed.kind, pb::EventKind::ReservationCommitted as i32);
    // the unfiltered watcher saw both orders, in order
    let o2 = next(&mut all).await;
    let o1 = next(&mut all).await;
    let kinds = [o2.kind, o1.kind];
    assert_eq!(kinds, [pb::EventKind::ReservationCreated as i32; 2]);
    // a new watcher resuming after o-2's event gets o-1's creation and commit, nothing before
    let mut resumed = events.watch(watch(&o2.id)).await.unwrap().into_inner();
    assert_eq!(next(&mut resumed).await.key, o1.key);
    assert_eq!(next(&mut resumed).await.key, committed.key);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_watch_requests_are_refused_naming_the_field() {
    let mut config = quiet_config();
    config.settings.events.max_filter_values = 3;
    let server = TestServer::start_with(config).await;
    server.stock(&[("wh-sevilla", "TEE-1", 5, 0)]).await;
    let mut events = EventsClient::new(server.channel.clone());
    let cases = [
        (watch("12"), Code::InvalidArgument, "after:"),
        (watch("1-x"), Code::InvalidArgument, "after:"),
        (
            watch("99999999999999-0"),
            Code::InvalidArgument,
            "later than the newest",
        ),
        (
            pb::WatchRequest {
                kinds: vec![42],
                ..Default::default()
            },
            Code::InvalidArgument,
            "kinds[0]: 42 is not an event kind",
        ),
        (
            pb::WatchRequest {
                kinds: vec![0],
                ..Default::default()
            },
            Code::InvalidArgument,
            "kinds[0]",
        ),
        (
            pb::WatchRequest {
                skus: vec!["a".into(), "b".into(), "c".into(), "d".into()],
                ..Default::default()
            },
            Code::InvalidArgument,
            "events.max_filter_values",
        ),
        (
            pb::WatchRequest {
                node_ids: vec![" ".into()],
                ..Default::default()
            },
            Code::InvalidArgument,
            "node_ids[0]",
        ),
    ];
    for (request, code, says) in cases {
        let status = events
            .watch(request.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{request:?} was accepted"));
        assert_eq!(status.code(), code, "{request:?}: {status:?}");
        assert!(
            status.message().contains(says),
            "{request:?}: {}",
            status.message()
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_cursor_older_than_what_is_kept_is_out_of_range() {
    let mut config = quiet_config();
    config.settings.events.retain_events = 2;
    let server = TestServer::start_with(config).await;
    for qty in [5, 6, 7] {
        server.stock(&[("wh-sevilla", "TEE-1", qty, 0)]).await;
    }
    let mut events = EventsClient::new(server.channel.clone());
    let mut kept = events.watch(watch("0-0")).await.unwrap().into_inner();
    let second = next(&mut kept).await;
    let third = next(&mut kept).await;
    assert!(second.key != third.key);
    let Err(status) = events.watch(watch("0-1")).await else {
        panic!("a cursor before what is kept was accepted");
    };
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status
            .message()
            .contains(&format!("the oldest kept is {}", second.id)),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("GetAvailability"),
        "{}",
        status.message()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told_where_to_resume() {
    let mut config = quiet_config();
    config.settings.events.watcher_buffer = 4;
    let server = TestServer::start_with(config).await;
    let mut events = EventsClient::new(server.channel.clone());
    let mut slow = events.watch(watch("")).await.unwrap().into_inner();
    // far more events than the watcher's queue towards the client and the live buffer hold
    for round in 0..40 {
        let rows: Vec<(String, i64)> = (0..50).map(|i| (format!("SKU-{i}"), round + 1)).collect();
        let rows: Vec<(&str, &str, i64, i64)> = rows
            .iter()
            .map(|(sku, q)| ("wh-sevilla", sku.as_str(), *q, 0))
            .collect();
        server.stock(&rows).await;
    }
    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
            Ok(Some(Ok(_))) => received += 1,
            Ok(Some(Err(status))) => break status,
            other => panic!("the stream ended without saying why: {other:?}"),
        }
    };
    assert!(received < 2000, "{received}");
    assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    assert!(
        ended.message().contains("watch again with after = "),
        "{}",
        ended.message()
    );
    server.shutdown().await;
}

fn alert(e: &pb::Event) -> (i32, String, String, String, i64, i64) {
    match &e.change {
        Some(pb::event::Change::Alert(a)) => (
            e.kind,
            a.sku.clone(),
            a.node_id.clone(),
            a.segment.clone(),
            a.ats,
            // none: a state ended as no threshold applies any more
            a.threshold.unwrap_or(-1),
        ),
        other => panic!("not an alert: {other:?}"),
    }
}

#[tokio::test]
async fn stock_crossing_a_threshold_is_reported_once_each_way_with_hysteresis() {
    // the demo thresholds: 20 at a warehouse, 50 network-wide, hysteresis 2
    let server = TestServer::start().await;
    let events = EventsClient::new(server.channel.clone());
    let watch_sku = |request: pb::WatchRequest| {
        let mut events = events.clone();
        async move { events.watch(request).await.unwrap().into_inner() }
    };
    let mut low = watch_sku(pb::WatchRequest {
        skus: vec!["ALERT-1".into()],
        node_ids: vec!["wh-getafe".into()],
        kinds: vec![
            pb::EventKind::LowStock as i32,
            pb::EventKind::StockRecovered as i32,
        ],
        ..Default::default()
    })
    .await;
    let mut storefront = watch_sku(pb::WatchRequest {
        skus: vec!["ALERT-1".into()],
        segments: vec!["standard".into()],
        kinds: vec![
            pb::EventKind::OutOfStock as i32,
            pb::EventKind::BackInStock as i32,
        ],
        ..Default::default()
    })
    .await;
    server.stock(&[("wh-getafe", "ALERT-1", 100, 0)]).await;
    server.stock(&[("wh-getafe", "ALERT-1", 20, 0)]).await;
    let first = alert(&next(&mut low).await);
    assert_eq!(
        first,
        (
            pb::EventKind::LowStock as i32,
            "ALERT-1".into(),
            "wh-getafe".into(),
            String::new(),
            20,
            20
        )
    );
    // bouncing within the hysteresis reports nothing; above it, one recovery
    for on_hand in [21, 19, 22, 23] {
        server.stock(&[("wh-getafe", "ALERT-1", on_hand, 0)]).await;
    }
    let second = alert(&next(&mut low).await);
    assert_eq!(
        (second.0, second.4),
        (pb::EventKind::StockRecovered as i32, 23)
    );
    // the last unit gone: out of stock for the segment, network-wide, then back
    server.stock(&[("wh-getafe", "ALERT-1", 0, 0)]).await;
    let out = alert(&next(&mut storefront).await);
    assert_eq!(
        out,
        (
            pb::EventKind::OutOfStock as i32,
            "ALERT-1".into(),
            String::new(),
            "standard".into(),
            0,
            0
        )
    );
    // GetAvailability marks what is below its threshold now
    let availability = server
        .inventory()
        .get_availability(pb::GetAvailabilityRequest {
            skus: vec!["ALERT-1".into()],
            segment: "standard".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let sku = &availability.skus[0];
    assert_eq!(
        (sku.low_stock_threshold, sku.below_threshold),
        (Some(50), true)
    );
    let getafe = sku.nodes.iter().find(|n| n.node_id == "wh-getafe").unwrap();
    assert_eq!(
        (getafe.low_stock_threshold, getafe.below_threshold),
        (Some(20), true)
    );
    server.stock(&[("wh-getafe", "ALERT-1", 5, 0)]).await;
    let back = alert(&next(&mut storefront).await);
    assert_eq!((back.0, back.4), (pb::EventKind::BackInStock as i32, 5));
    // the warehouse went low again on the way down: reported once, not per update
    let again = alert(&next(&mut low).await);
    assert_eq!((again.0, again.4), (pb::EventKind::LowStock as i32, 0));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), low.next())
            .await
            .is_err(),
        "one low report for one crossing"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn thresholds_changed_in_alerts_toml_apply_live() {
    use dom_router::config::{Config, ConfigSource};
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    for file in ["network.toml", "segments.toml"] {
        std::fs::copy(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config")
                .join(file),
            config_dir.join(file),
        )
        .unwrap();
    }
    let thresholds = |units: u64| {
        format!(
            "hysteresis = 0\n[[node]]\nsku = \"LIVE-*\"\nnode = \"wh-getafe\"\nunits = {units}\n"
        )
    };
    std::fs::write(config_dir.join("alerts.toml"), thresholds(5)).unwrap();
    let mut config =
        Config::load(ConfigSource::Dir(config_dir.clone()), std::iter::empty()).unwrap();
    config.settings.store.seed_stock = false;
    config.settings.server.reload_interval_ms = 50;
    let (server, _) = TestServer::serve(config, Some(ConfigSource::Dir(config_dir.clone()))).await;
    let mut events = EventsClient::new(server.channel.clone());
    let mut low = events
        .watch(pb::WatchRequest {
            kinds: vec![pb::EventKind::LowStock as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    server.stock(&[("wh-getafe", "LIVE-1", 10, 0)]).await;
    // 10 is above 5: nothing; then the threshold goes to 12 while it serves
    std::fs::write(config_dir.join("alerts.toml"), thresholds(12)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let availability = server
            .inventory()
            .get_availability(pb::GetAvailabilityRequest {
                skus: vec!["LIVE-1".into()],
                segment: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let getafe = &availability.skus[0].nodes[0];
        if getafe.low_stock_threshold == Some(12) {
            assert!(getafe.below_threshold);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new threshold never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the next change of the sku is looked at under the new threshold
    server.stock(&[("wh-getafe", "LIVE-1", 11, 0)]).await;
    let reported = alert(&next(&mut low).await);
    assert_eq!(
        (reported.2.as_str(), reported.4, reported.5),
        ("wh-getafe", 11, 12)
    );
    // a bad thresholds file is refused, and the ones in force stay
    std::fs::write(
        config_dir.join("alerts.toml"),
        "[[node]]\nsku = \"LIVE-*\"\nnode = \"nowhere\"\nunits = 1\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let availability = server
        .inventory()
        .get_availability(pb::GetAvailabilityRequest {
            skus: vec!["LIVE-1".into()],
            segment: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(availability.skus[0].nodes[0].low_stock_threshold, Some(12));
    server.shutdown().await;
}

#[tokio::test]
async fn events_and_watchers_show_in_the_metrics() {
    let (server, ports) = TestServer::serve(quiet_config(), None).await;
    let mut events = EventsClient::new(server.channel.clone());
    let mut watching = events.watch(watch("")).await.unwrap().into_inner();
    server.stock(&[("wh-getafe", "METRIC-1", 5, 0)]).await;
    next(&mut watching).await;
    let text = scrape(ports.metrics).await;
    assert!(
        sample(&text, "dom_router_events_total", &[("kind", "stock")]) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "dom_router_event_watchers", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "dom_router_events_sent_total", &[]) >= 1.0,
        "{text}"
    );
    // the sweep (every 20 ms here) reads how long the log is
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sample(
        &scrape(ports.metrics).await,
        "dom_router_event_log_length",
        &[],
    ) < 1.0
    {
        assert!(std::time::Instant::now() < deadline, "no log length");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // every kind has a series from the start
    for kind in [
        "created",
        "committed",
        "released",
        "expired",
        "fulfilled",
        "low",
        "back",
    ] {
        assert!(
            text.contains(&format!("dom_router_events_total{{kind=\"{kind}\"}}")),
            "{kind}: {text}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_sweep_drops_events_past_their_age() {
    let mut config = quiet_config();
    config.settings.events.retain_secs = 60;
    let server = TestServer::start_with(config).await;
    server.stock(&[("wh-getafe", "AGE-1", 5, 0)]).await;
    let mut events = EventsClient::new(server.channel.clone());
    // kept: a cursor before it reads on
    assert!(events.watch(watch("0-1")).await.is_ok());
    // a minute and more later, the next sweep (every 20 ms here) drops it
    server.clock.advance_secs(61);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Err(status) = events.watch(watch("0-1")).await {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the event was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_stopping_server_ends_every_watch_with_unavailable() {
    let mut server = TestServer::start_with(quiet_config()).await;
    let mut events = EventsClient::new(server.channel.clone());
    let mut watching = events.watch(watch("")).await.unwrap().into_inner();
    server.begin_shutdown();
    let ended = tokio::time::timeout(Duration::from_secs(5), watching.next())
        .await
        .expect("the watch ends within 5 s");
    match ended {
        Some(Err(status)) => {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert!(status.message().contains("shutting down"), "{status:?}");
        }
        other => panic!("{other:?}"),
    }
    // and the drain does not wait for it
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("the server stops");
}

#[tokio::test]
async fn a_reorder_point_from_the_feed_raises_alerts_in_place_of_the_rules() {
    // the demo has no store threshold for TOY-* skus, and 3 for APP-* at stores
    let server = TestServer::start().await;
    let mut events = EventsClient::new(server.channel.clone());
    let mut low = events
        .watch(pb::WatchRequest {
            skus: vec!["TOY-9".into(), "APP-9".into()],
            node_ids: vec!["st-madrid".into()],
            kinds: vec![
                pb::EventKind::LowStock as i32,
                pb::EventKind::StockRecovered as i32,
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = |sku: &str, on_hand, reorder_point| pb::StockUpdate {
        node_id: "st-madrid".into(),
        sku: sku.into(),
        kind: pb::StockUpdateKind::Snapshot as i32,
        quantity: on_hand,
        sequence: next_sequence(),
        reorder_point,
        ..plus_one("st-madrid", sku, 1)
    };
    let set = |updates: Vec<pb::StockUpdate>| {
        let mut inventory = server.inventory();
        async move {
            let summary = inventory
                .set_stock(pb::SetStockRequest { updates })
                .await
                .unwrap()
                .into_inner();
            assert_eq!((summary.applied, summary.rejected), (1, 0), "{summary:?}");
        }
    };
    let threshold = |sku: &str| {
        let mut inventory = server.inventory();
        let sku = sku.to_owned();
        async move {
            let a = inventory
                .get_availability(pb::GetAvailabilityRequest {
                    skus: vec![sku],
                    segment: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            let n = a.skus[0]
                .nodes
                .iter()
                .find(|n| n.node_id == "st-madrid")
                .cloned()
                .unwrap();
            (n.low_stock_threshold, n.below_threshold)
        }
    };
    // no rule for toys at stores: nothing, until the feed sets a reorder point
    set(vec![snapshot("TOY-9", 10, None)]).await;
    assert_eq!(threshold("TOY-9").await, (None, false));
    set(vec![snapshot("TOY-9", 10, Some(6))]).await;
    assert_eq!(threshold("TOY-9").await, (Some(6), false));
    set(vec![snapshot("TOY-9", 6, None)]).await;
    let first = alert(&next(&mut low).await);
    assert_eq!(
        first,
        (
            pb::EventKind::LowStock as i32,
            "TOY-9".into(),
            "st-madrid".into(),
            String::new(),
            6,
            6
        )
    );
    assert_eq!(threshold("TOY-9").await, (Some(6), true));
    // above the rule of 3 for apparel, the feed's point of 8 is the one in force
    set(vec![snapshot("APP-9", 20, Some(8))]).await;
    set(vec![snapshot("APP-9", 7, None)]).await;
    let apparel = alert(&next(&mut low).await);
    assert_eq!((apparel.1.as_str(), apparel.4, apparel.5), ("APP-9", 7, 8));
    // removed (-1), the rule's 3 applies again: 7 is above it plus the hysteresis
    set(vec![snapshot("APP-9", 7, Some(-1))]).await;
    assert_eq!(threshold("APP-9").await, (Some(3), false));
    let recovered = alert(&next(&mut low).await);
    assert_eq!(
        (recovered.0, recovered.1.as_str(), recovered.5),
        (pb::EventKind::StockRecovered as i32, "APP-9", 3)
    );
    // a point that is not 0 or more, nor -1, is refused naming the field, and changes nothing
    let summary = server
        .inventory()
        .set_stock(pb::SetStockRequest {
            updates: vec![snapshot("TOY-9", 1, Some(-5))],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.rejected, 1);
    assert!(
        summary.rejections[0].reason.starts_with("reorder_point:"),
        "{summary:?}"
    );
    assert_eq!(threshold("TOY-9").await, (Some(6), true));
    // removed where no rule applies: the low state ends, reported with no threshold
    set(vec![snapshot("TOY-9", 6, Some(-1))]).await;
    let ended = alert(&next(&mut low).await);
    assert_eq!(
        (ended.0, ended.1.as_str(), ended.4, ended.5),
        (pb::EventKind::StockRecovered as i32, "TOY-9", 6, -1)
    );
    assert_eq!(threshold("TOY-9").await, (None, false));
    server.shutdown().await;
}
