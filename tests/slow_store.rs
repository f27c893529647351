//! A store that is slow, stalled or late to recover: a hold's time runs from when it is
//! written, a call past the request timeout ends DEADLINE_EXCEEDED, and health follows the
//! store back within a fraction of its check interval.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use common::redis::RedisServer;
use common::*;
use dom_router::api::{convert, pb};
use dom_router::clock::{Clock, Millis};
use dom_router::config::StoreKind;
use dom_router::store::ReservationState;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A clock that moves on by `step` each time it is read, as if every step of a call took that
/// long; it remembers the last time it told.
#[derive(Debug)]
struct SlowClock {
    now: AtomicI64,
    step: Millis,
}

impl Clock for SlowClock {
    fn now_millis(&self) -> Millis {
        self.now.fetch_add(self.step, Ordering::SeqCst) + self.step
    }
}

async fn reserve_under(step: Millis) -> (dom_router::store::Reservation, Millis) {
    let mut config = demo_config();
    config.settings.store.seed_stock = true;
    let clock = Arc::new(SlowClock {
        now: AtomicI64::new(START_MILLIS),
        step,
    });
    let engine = dom_router::server::app(&config, clock.clone())
        .unwrap()
        .engine;
    let order = convert::order(
        Some(order("slow-1", "standard", vec![line("1", "APP-0003", 1)])),
        100,
    )
    .unwrap();
    let (reservation, created) = engine.reserve(&order, Some(1), None).await.unwrap();
    assert!(created);
    (reservation, clock.now.load(Ordering::SeqCst))
}

#[tokio::test]
async fn a_hold_never_answers_held_with_its_expiry_past() {
    // each step takes 300 ms against a 1 s hold: the hold is still good when the answer goes
    let (r, answered) = reserve_under(300).await;
    assert_eq!(r.state, ReservationState::Held);
    assert!(
        r.expires_at.unwrap() > answered,
        "{:?} until {:?}, answered at {answered}",
        r.state,
        r.expires_at
    );
    assert_eq!(r.expires_at.unwrap() - r.created_at, 1_000);
    // each step takes 2 s: the hold ran out before the answer, and the answer says so
    let (r, answered) = reserve_under(2_000).await;
    assert!(
        r.state != ReservationState::Held || r.expires_at.unwrap() > answered,
        "{:?} until {:?}, answered at {answered}",
        r.state,
        r.expires_at
    );
    assert_eq!(r.state, ReservationState::Expired);
}

fn redis_config(url: String) -> dom_router::config::Config {
    let mut config = demo_config();
    config.settings.store.kind = StoreKind::Redis;
    config.settings.store.redis.urls = vec![url];
    config.settings.store.redis.key_prefix = "slow".into();
    config
}

#[tokio::test]
async fn a_call_past_the_request_timeout_is_deadline_exceeded() {
    let redis = RedisServer::start();
    let mut config = redis_config(redis.url());
    config.settings.server.request_timeout_ms = 300;
    config.settings.store.redis.op_timeout_ms = 5_000;
    let server = TestServer::start_with(config).await;
    server.stock(&[("wh-getafe", "SLOW-1", 5, 0)]).await;
    // Redis answers no client for 2 s: the call waits on it past the server's timeout
    redis::command(redis.port, &["CLIENT", "PAUSE", "2000", "ALL"]).unwrap();
    let status = server
        .inventory()
        .get_availability(pb::GetAvailabilityRequest {
            skus: vec!["SLOW-1".into()],
            segment: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().contains("300 ms"), "{status:?}");
}

async fn health(server: &TestServer) -> Option<ServingStatus> {
    let mut client = HealthClient::new(server.channel.clone());
    let r = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(r.into_inner().status).ok()
}

#[tokio::test]
async fn health_follows_the_store_back_well_within_the_interval() {
    // the store is checked once a minute while it answers; until it does, far more often
    let port = common::redis::free_port();
    let mut config = redis_config(format!("redis://127.0.0.1:{port}"));
    config.settings.server.health_check_interval_ms = 60_000;
    config.settings.store.redis.connect_timeout_ms = 100;
    config.settings.store.redis.op_timeout_ms = 200;
    let server = TestServer::start_with(config).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(health(&server).await, Some(ServingStatus::NotServing));
    let _redis = RedisServer::start_on(port);
    // a minute's interval would leave it NOT_SERVING for the whole of this wait
    let mut serving = false;
    for _ in 0..100 {
        if health(&server).await == Some(ServingStatus::Serving) {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(serving, "still not serving 10 s after Redis came up");
}
