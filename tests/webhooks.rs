//! Webhooks against a local HTTP receiver started by each test: signed JSON of each matching
//! event, in order; retries after errors and timeouts; and one replica delivering at a time,
//! another taking over from the saved cursor when it stops.

mod common;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::redis::{RedisServer, command};
use common::*;
use dom_router::api::pb;
use dom_router::config::{Config, StoreKind, WebhookSettings};
use dom_router::server::webhooks::signature;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;

const SECRET: &str = "a-webhook-secret-for-tests";

/// What the receiver does with the next request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Waits this long, then answers 200.
    Stall(u64),
}

/// A request as the receiver got it.
#[derive(Clone, Debug)]
struct Received {
    signature: String,
    key: String,
    webhook: String,
    body: Bytes,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Receiver {
    script: Mutex<VecDeque<Answer>>,
    got: Mutex<Vec<Received>>,
    delivered: Mutex<Vec<Received>>,
}

/// A receiver on 127.0.0.1:0: answers as scripted, then 200.
async fn receiver(script: Vec<Answer>) -> (SocketAddr, Arc<Receiver>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Receiver {
        script: Mutex::new(script.into()),
        ..Default::default()
    });
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let state = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        let header = |name: &str| {
                            request
                                .headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let got = Received {
                            signature: header("x-dom-signature"),
                            key: header("x-dom-event-key"),
                            webhook: header("x-dom-webhook"),
                            body: Bytes::new(),
                        };
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let got = Received { body, ..got };
                        state.got.lock().push(got.clone());
                        let answer = state.script.lock().pop_front();
                        let status = match answer {
                            Some(Answer::Status(s)) => s,
                            Some(Answer::Stall(ms)) => {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                                200
                            }
                            None => 200,
                        };
                        if status == 200 && !matches!(answer, Some(Answer::Stall(_))) {
                            state.delivered.lock().push(got);
                        }
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, state)
}

fn hook(addr: SocketAddr, kinds: &[&str]) -> WebhookSettings {
    WebhookSettings {
        name: "oms".into(),
        url: format!("http://{addr}/dom/events"),
        kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        skus: Vec::new(),
        node_ids: Vec::new(),
        segments: Vec::new(),
        order_ids: Vec::new(),
        secret: Some(SECRET.into()),
        secret_env: None,
        timeout_ms: 300,
    }
}

fn quiet(mut config: Config) -> Config {
    config.alerts = Default::default();
    config
}

/// Waits until `done` holds of what the receiver took (200), within `within`.
async fn until(receiver: &Receiver, within: Duration, done: impl Fn(&[Received]) -> bool) {
    let deadline = Instant::now() + within;
    while !done(&receiver.delivered.lock()) {
        assert!(
            Instant::now() < deadline,
            "not delivered in time: {:#?}",
            receiver.got.lock().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn order_ids(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| {
            r.json()["reservation"]["orderId"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

async fn reserve(server: &TestServer, id: &str) {
    server
        .sourcing()
        .reserve(reserve_request(order(
            id,
            "standard",
            vec![line("1", "HOOK-1", 1)],
        )))
        .await
        .unwrap();
}

#[tokio::test]
async fn matching_events_arrive_signed_in_order_as_json() {
    let (addr, got) = receiver(Vec::new()).await;
    let mut config = quiet(demo_config());
    config.settings.webhook = vec![hook(addr, &["reservation_created"])];
    let server = TestServer::start_with(config).await;
    // the webhook starts from the newest event: give it a moment to take its lease
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stock(&[("wh-getafe", "HOOK-1", 50, 0)]).await;
    for n in 0..5 {
        reserve(&server, &format!("h-{n}")).await;
    }
    until(&got, Duration::from_secs(10), |d| d.len() >= 5).await;
    let delivered = got.delivered.lock().clone();
    // only the kind asked for: no stock changes
    assert_eq!(order_ids(&delivered), ["h-0", "h-1", "h-2", "h-3", "h-4"]);
    for r in &delivered {
        assert_eq!(
            r.signature,
            signature(SECRET, &r.body),
            "the signature verifies"
        );
        assert_ne!(r.signature, signature("another-secret-entirely", &r.body));
        assert_eq!(r.webhook, "oms");
        let json = r.json();
        assert_eq!(json["kind"], "EVENT_KIND_RESERVATION_CREATED");
        assert_eq!(json["key"], r.key.as_str());
        assert_eq!(json["reservation"]["state"], "RESERVATION_STATE_HELD");
        assert_eq!(json["reservation"]["allocations"][0]["quantity"], "1");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn failed_posts_are_tried_again_and_nothing_is_lost_or_reordered() {
    // two server errors, a stall past the timeout, a 429, then a refusal of one event
    let (addr, got) = receiver(vec![
        Answer::Status(500),
        Answer::Status(503),
        Answer::Stall(1000),
        Answer::Status(429),
    ])
    .await;
    let mut config = quiet(demo_config());
    let mut h = hook(addr, &["reservation_created"]);
    h.name = "retried".into();
    config.settings.webhook = vec![h];
    let (server, ports) = TestServer::serve(config, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stock(&[("wh-getafe", "HOOK-1", 50, 0)]).await;
    for n in 0..4 {
        reserve(&server, &format!("r-{n}")).await;
    }
    until(&got, Duration::from_secs(20), |d| d.len() >= 4).await;
    assert_eq!(
        order_ids(&got.delivered.lock()),
        ["r-0", "r-1", "r-2", "r-3"]
    );
    // the first event was sent five times, under one key
    let attempts = got.got.lock().clone();
    let first = &attempts[0].key;
    assert_eq!(attempts.iter().filter(|r| &r.key == first).count(), 5);
    // counted by result; the lag is of the last event delivery went past
    let text = scrape(ports.metrics).await;
    let deliveries = |result| {
        sample(
            &text,
            "dom_router_webhook_deliveries_total",
            &[("webhook", "retried"), ("result", result)],
        )
    };
    assert_eq!((deliveries("delivered"), deliveries("failed")), (4.0, 4.0));
    let lag = sample(
        &text,
        "dom_router_webhook_lag_seconds",
        &[("webhook", "retried")],
    );
    assert!((0.0..60.0).contains(&lag), "{lag}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_receiver_refusing_an_event_does_not_hold_up_the_rest() {
    let (addr, got) = receiver(vec![Answer::Status(400)]).await;
    let mut config = quiet(demo_config());
    let mut h = hook(addr, &["reservation_created"]);
    h.name = "refusing".into();
    config.settings.webhook = vec![h];
    let (server, ports) = TestServer::serve(config, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stock(&[("wh-getafe", "HOOK-1", 50, 0)]).await;
    for n in 0..3 {
        reserve(&server, &format!("x-{n}")).await;
    }
    until(&got, Duration::from_secs(10), |d| d.len() >= 2).await;
    assert_eq!(order_ids(&got.delivered.lock()), ["x-1", "x-2"]);
    assert_eq!(
        got.got.lock().len(),
        3,
        "the refused event is not sent again"
    );
    let text = scrape(ports.metrics).await;
    let deliveries = |result| {
        sample(
            &text,
            "dom_router_webhook_deliveries_total",
            &[("webhook", "refusing"), ("result", result)],
        )
    };
    assert_eq!(
        (
            deliveries("delivered"),
            deliveries("rejected"),
            deliveries("failed")
        ),
        (2.0, 1.0, 0.0)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_delivers_at_a_time_and_another_goes_on_from_the_cursor() {
    let redis = RedisServer::start();
    let (addr, got) = receiver(Vec::new()).await;
    let replica = || {
        let mut config = quiet(demo_config());
        config.settings.store.kind = StoreKind::Redis;
        config.settings.store.redis.urls = vec![redis.url()];
        config.settings.store.redis.key_prefix = "hooks".into();
        config.settings.webhook = vec![hook(addr, &["reservation_created"])];
        config
    };
    let lease_holder = || command(redis.port, &["GET", "hooks:{w:webhook:oms}:lease"]).unwrap();
    // the first replica alone takes the lease
    let first = TestServer::start_with(replica()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.stock(&[("wh-getafe", "HOOK-1", 500, 0)]).await;
    reserve(&first, "a-0").await;
    until(&got, Duration::from_secs(10), |d| !d.is_empty()).await;
    let holder = lease_holder();
    assert!(!holder.is_empty(), "the lease is held");
    let second = TestServer::start_with(replica()).await;
    for n in 1..10 {
        let through = if n % 2 == 0 { &first } else { &second };
        reserve(through, &format!("a-{n}")).await;
    }
    until(&got, Duration::from_secs(10), |d| d.len() >= 10).await;
    // the replica holding the lease stops, and lets the lease go as it does; the other takes
    // over from where it got to
    first.shutdown().await;
    // gone, or already the other replica's
    assert_ne!(lease_holder(), holder, "a stopped holder lets its lease go");
    for n in 10..20 {
        reserve(&second, &format!("a-{n}")).await;
    }
    until(&got, Duration::from_secs(20), |d| d.len() >= 20).await;
    let ids = order_ids(&got.delivered.lock());
    let want: Vec<String> = (0..20).map(|n| format!("a-{n}")).collect();
    // each once, in order: the handover loses nothing and repeats nothing
    assert_eq!(ids, want);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_holder_s_webhook_is_taken_over_once_its_lease_runs_out() {
    use common::replica::{Replica, Setup};
    let redis = RedisServer::start();
    let (addr, got) = receiver(Vec::new()).await;
    // the demo network and segments, no thresholds, and the webhook in server.toml
    let dir = tempfile::tempdir().unwrap();
    for file in ["network.toml", "segments.toml"] {
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/config/").to_owned() + file,
            dir.path().join(file),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("alerts.toml"), "").unwrap();
    std::fs::write(
        dir.path().join("server.toml"),
        format!(
            "[[webhook]]\nname = \"oms\"\nurl = \"http://{addr}/dom/events\"\n\
             kinds = [\"reservation_created\"]\nsecret = \"{SECRET}\"\ntimeout_ms = 300\n"
        ),
    )
    .unwrap();
    let urls = [redis.url()];
    let setup = Setup {
        urls: &urls,
        cluster: false,
        prefix: "killed",
        logs: dir.path(),
        config: Some(dir.path()),
    };
    let mut first = Replica::start(&setup).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stock = pb::StockUpdate {
        node_id: "wh-getafe".into(),
        sku: "HOOK-1".into(),
        kind: pb::StockUpdateKind::Snapshot as i32,
        quantity: 500,
        sequence: 1,
        ..Default::default()
    };
    first
        .inventory()
        .set_stock(pb::SetStockRequest {
            updates: vec![stock],
        })
        .await
        .unwrap();
    let place = |replica: &Replica, id: String| {
        let mut sourcing = replica.sourcing();
        async move {
            sourcing
                .reserve(reserve_request(order(
                    &id,
                    "standard",
                    vec![line("1", "HOOK-1", 1)],
                )))
                .await
                .unwrap();
        }
    };
    for n in 0..5 {
        place(&first, format!("k-{n}")).await;
    }
    // the only replica so far delivers, so it holds the lease
    until(&got, Duration::from_secs(10), |d| d.len() >= 5).await;
    let second = Replica::start(&setup).await;
    first.kill();
    let killed = Instant::now();
    for n in 5..10 {
        place(&second, format!("k-{n}")).await;
    }
    until(&got, Duration::from_secs(30), |d| d.len() >= 10).await;
    // the lease of a killed holder is never let go: the other replica waits it out
    assert!(
        killed.elapsed() >= Duration::from_secs(3),
        "delivered {:?} after the kill, within the lease",
        killed.elapsed()
    );
    let want: Vec<String> = (0..10).map(|n| format!("k-{n}")).collect();
    assert_eq!(order_ids(&got.delivered.lock()), want);
}

#[tokio::test]
async fn a_webhook_whose_secret_variable_is_missing_stops_the_start() {
    let mut config = quiet(demo_config());
    let mut h = hook("127.0.0.1:9".parse().unwrap(), &[]);
    h.secret = None;
    h.secret_env = Some("DOM_ROUTER_TEST_NO_SUCH_SECRET".into());
    config.settings.webhook = vec![h];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = dom_router::server::app(&config, Arc::new(dom_router::clock::SystemClock)).unwrap();
    let e = dom_router::server::run(listener, app, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("webhook[0].secret_env: the variable DOM_ROUTER_TEST_NO_SUCH_SECRET"),
        "{e}"
    );
}

#[test]
fn the_proto_json_of_an_event_names_every_field_in_camel_case() {
    let e = pb::Event {
        id: "1-2".into(),
        key: "1-2".into(),
        at_ms: 1,
        kind: pb::EventKind::LowStock as i32,
        change: Some(pb::event::Change::Alert(pb::AlertChange {
            sku: "A".into(),
            node_id: "n".into(),
            segment: String::new(),
            ats: 3,
            threshold: Some(5),
        })),
    };
    let json = dom_router::api::events::event_json(&e);
    assert_eq!(
        json,
        serde_json::json!({
            "id": "1-2", "key": "1-2", "atMs": "1", "kind": "EVENT_KIND_LOW_STOCK",
            "alert": {"sku": "A", "nodeId": "n", "segment": "", "ats": "3", "threshold": "5"}
        })
    );
}

#[tokio::test]
async fn webhooks_filter_reroutes_fills_and_cancellations_by_kind() {
    let (addr, got) = receiver(Vec::new()).await;
    let mut config = quiet(demo_config());
    config.settings.webhook = vec![hook(
        addr,
        &[
            "reservation_rerouted",
            "backorder_filled",
            "units_cancelled",
        ],
    )];
    let server = TestServer::start_with(config).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stock(&[("wh-getafe", "HOOK-2", 2, 0)]).await;
    let mut sourcing = server.sourcing();
    // a standard order of 3: two held, one waits
    sourcing
        .reserve(reserve_request(order(
            "hk-1",
            "standard",
            vec![line("1", "HOOK-2", 3)],
        )))
        .await
        .unwrap();
    // more stock: the unit waiting is filled
    server
        .stock(&[
            ("wh-getafe", "HOOK-2", 3, 0),
            ("wh-zaragoza", "HOOK-2", 1, 0),
        ])
        .await;
    // Getafe turns the order down: the units go to Zaragoza or wait
    until(&got, Duration::from_secs(10), |d| !d.is_empty()).await;
    sourcing
        .reroute(pb::RerouteRequest {
            order_id: "hk-1".into(),
            node_id: "wh-getafe".into(),
            lines: Vec::new(),
            reason: pb::RerouteReason::StoreRejected as i32,
            reroute_id: "hk-r".into(),
        })
        .await
        .unwrap();
    // a vip order turned down with nowhere else to go: its units are cancelled
    server.stock(&[("wh-sevilla", "HOOK-3", 1, 0)]).await;
    sourcing
        .reserve(reserve_request(order(
            "hk-2",
            "vip",
            vec![line("1", "HOOK-3", 1)],
        )))
        .await
        .unwrap();
    sourcing
        .reroute(pb::RerouteRequest {
            order_id: "hk-2".into(),
            node_id: "wh-sevilla".into(),
            lines: Vec::new(),
            reason: pb::RerouteReason::Damaged as i32,
            reroute_id: "hk-r2".into(),
        })
        .await
        .unwrap();
    until(&got, Duration::from_secs(10), |d| d.len() >= 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = got.delivered.lock().clone();
    let kinds: Vec<(String, String)> = delivered
        .iter()
        .map(|r| {
            let json = r.json();
            (
                json["kind"].as_str().unwrap_or("").to_owned(),
                json["reservation"]["orderId"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    // only the kinds asked for: no creations, no stock changes
    assert_eq!(
        kinds,
        [
            ("EVENT_KIND_BACKORDER_FILLED".into(), "hk-1".into()),
            ("EVENT_KIND_RESERVATION_REROUTED".into(), "hk-1".into()),
            ("EVENT_KIND_RESERVATION_REROUTED".into(), "hk-2".into()),
            ("EVENT_KIND_UNITS_CANCELLED".into(), "hk-2".into()),
        ]
    );
    server.shutdown().await;
}
