//! The service on Redis, as operators run it: started before Redis, through Redis pausing and
//! restarting under load, and as several replica processes on one Redis Cluster racing for
//! scarce stock, with one of them killed mid-reservation or mid-reroute. After each, Redis is read directly
//! and stock, holds and reservation records must agree.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::redis::{Audit, RedisCluster, RedisServer, command, free_port};
use common::replica::{Replica, Setup, wait_for_health};
use common::{InventoryClient, SourcingClient, TestServer, demo_config, line, order};
use dom_router::api::pb;
use dom_router::config::{Config, StoreKind};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

static NEXT_PREFIX: AtomicU64 = AtomicU64::new(0);

fn prefix() -> String {
    format!("svc{}", NEXT_PREFIX.fetch_add(1, Ordering::Relaxed))
}

fn redis_config(urls: Vec<String>, cluster: bool, prefix: &str) -> Config {
    let mut config = demo_config();
    let store = &mut config.settings.store;
    store.kind = StoreKind::Redis;
    store.redis.urls = urls;
    store.redis.cluster = cluster;
    store.redis.key_prefix = prefix.to_owned();
    store.redis.op_timeout_ms = 300;
    store.redis.connect_timeout_ms = 200;
    config
}

/// Timeouts for a test of what Redis answers, not of how fast: the short ones of the failure
/// tests would fail it on a machine busy with the rest of the suite.
fn patient(mut config: Config) -> Config {
    config.settings.store.redis.op_timeout_ms = 5_000;
    config.settings.store.redis.connect_timeout_ms = 5_000;
    config
}

/// Snapshots at a sequence above any sent before by this test run.
async fn push_stock(inventory: &mut InventoryClient<Channel>, rows: &[(&str, &str, i64)]) {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let sequence = SEQ.fetch_add(1, Ordering::Relaxed);
    let updates = rows
        .iter()
        .map(|(node, sku, on_hand)| pb::StockUpdate {
            node_id: (*node).into(),
            sku: (*sku).into(),
            kind: pb::StockUpdateKind::Snapshot as i32,
            quantity: *on_hand,
            sequence,
            order_id: String::new(),
            safety_stock: Some(0),
            reorder_point: None,
            ..Default::default()
        })
        .collect();
    let summary = inventory
        .set_stock(pb::SetStockRequest { updates })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.applied as usize, rows.len(), "{summary:?}");
}

/// Polls Redis until stock and reservations agree (the sweep may still be rolling back), then
/// asserts it.
async fn settled_audit(ports: &[u16], prefix: &str) -> Audit {
    for _ in 0..200 {
        let audit = Audit::read(ports, prefix);
        if audit.is_consistent() {
            return audit;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let audit = Audit::read(ports, prefix);
    audit.assert_consistent();
    audit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starts_while_redis_is_down_and_serves_once_it_answers() {
    let port = free_port();
    let p = prefix();
    let server = TestServer::start_with(redis_config(
        vec![format!("redis://127.0.0.1:{port}")],
        false,
        &p,
    ))
    .await;
    wait_for_health(&server.channel, ServingStatus::NotServing).await;
    let e = server
        .sourcing()
        .quote(pb::QuoteRequest {
            order: Some(order("o1", "standard", vec![line("l1", "SKU-0001", 1)])),
            strategy: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("Redis"), "{}", e.message());

    let _redis = RedisServer::start_on(port);
    wait_for_health(&server.channel, ServingStatus::Serving).await;
    push_stock(&mut server.inventory(), &[("wh-getafe", "SKU-0001", 5)]).await;
    let r = server
        .sourcing()
        .reserve(common::reserve_request(order(
            "o1",
            "standard",
            vec![line("l1", "SKU-0001", 2)],
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(r.created);
    let audit = settled_audit(&[port], &p).await;
    assert_eq!(audit.levels[&("SKU-0001".into(), "wh-getafe".into())].1, 2);
}

/// Reserve then commit (every third released instead), as fast as it goes, until `stop`;
/// counts outcomes by status code.
async fn checkout_loop(
    mut sourcing: SourcingClient<Channel>,
    worker: usize,
    skus: Vec<&'static str>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    limit: usize,
) -> HashMap<Code, usize> {
    let mut seen: HashMap<Code, usize> = HashMap::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && n < limit {
        n += 1;
        let id = format!("w{worker}-{n}");
        let lines = (0..1 + n % 2)
            .map(|i| line(&format!("l{i}"), skus[(worker + n + i) % skus.len()], 1))
            .collect();
        let outcome = sourcing
            .reserve(common::reserve_request(order(&id, "standard", lines)))
            .await;
        let code = match outcome {
            Ok(_) => {
                let next = if n % 3 == 0 {
                    sourcing
                        .release(pb::ReleaseRequest {
                            order_id: id.clone(),
                            line_ids: vec![],
                        })
                        .await
                        .map(drop)
                } else {
                    sourcing
                        .commit(pb::CommitRequest {
                            order_id: id.clone(),
                        })
                        .await
                        .map(drop)
                };
                match next {
                    Ok(()) => Code::Ok,
                    Err(e) => e.code(),
                }
            }
            Err(e) => e.code(),
        };
        *seen.entry(code).or_default() += 1;
    }
    seen
}

/// Twenty checkouts in a row all succeed.
async fn serves_again(server: &TestServer) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let after = checkout_loop(server.sourcing(), 99, SKUS.to_vec(), stop, 20).await;
    assert_eq!(after.get(&Code::Ok), Some(&20), "{after:?}");
}

/// `n` checkout loops on the server until `stop`.
fn start_checkouts(
    server: &TestServer,
    n: usize,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<HashMap<Code, usize>>> {
    (0..n)
        .map(|w| {
            tokio::spawn(checkout_loop(
                server.sourcing(),
                w,
                SKUS.to_vec(),
                stop.clone(),
                usize::MAX,
            ))
        })
        .collect()
}

/// Outcomes of every checkout loop, by status code.
async fn finish_checkouts(
    workers: Vec<tokio::task::JoinHandle<HashMap<Code, usize>>>,
) -> HashMap<Code, usize> {
    let mut seen = HashMap::new();
    for w in workers {
        merge(&mut seen, w.await.unwrap());
    }
    seen
}

const SKUS: [&str; 4] = ["SKU-0001", "SKU-0002", "SKU-0003", "SKU-0004"];

fn ample_stock() -> Vec<(&'static str, &'static str, i64)> {
    SKUS.iter()
        .flat_map(|sku| [("wh-getafe", *sku, 100_000), ("wh-zaragoza", *sku, 100_000)])
        .collect()
}

fn merge(into: &mut HashMap<Code, usize>, from: HashMap<Code, usize>) {
    for (code, n) in from {
        *into.entry(code).or_default() += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_pausing_under_load_fails_fast_and_half_applies_nothing() {
    let redis = RedisServer::start();
    let p = prefix();
    let mut config = redis_config(vec![redis.url()], false, &p);
    config.settings.store.redis.pending_timeout_ms = 2_000;
    let server = TestServer::start_with(config).await;
    wait_for_health(&server.channel, ServingStatus::Serving).await;
    push_stock(&mut server.inventory(), &ample_stock()).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = start_checkouts(&server, 12, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // every client of Redis stalls for 1.5 s: calls in flight time out half-way through
    command(redis.port, &["CLIENT", "PAUSE", "1500", "ALL"]).unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = finish_checkouts(workers).await;
    assert!(
        seen.get(&Code::Unavailable).copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
    assert!(seen.get(&Code::Ok).copied().unwrap_or(0) > 0, "{seen:?}");
    let unexpected: Vec<_> = seen
        .keys()
        .filter(|c| !matches!(c, Code::Ok | Code::Unavailable))
        .collect();
    assert!(unexpected.is_empty(), "{seen:?}");
    // service resumed by itself after the pause
    serves_again(&server).await;
    // attempts cut off mid-way are rolled back once their deadline passes
    server.clock.advance_secs(3);
    let audit = settled_audit(&[redis.port], &p).await;
    assert!(audit.states.get("committed").copied().unwrap_or(0) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarting_under_load_is_survived() {
    let mut redis = RedisServer::start();
    let p = prefix();
    let server = TestServer::start_with(redis_config(vec![redis.url()], false, &p)).await;
    wait_for_health(&server.channel, ServingStatus::Serving).await;
    push_stock(&mut server.inventory(), &ample_stock()).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers = start_checkouts(&server, 8, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.stop();
    wait_for_health(&server.channel, ServingStatus::NotServing).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    wait_for_health(&server.channel, ServingStatus::Serving).await;
    // the restart lost every level: the feeds push their snapshots again
    push_stock(&mut server.inventory(), &ample_stock()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = finish_checkouts(workers).await;
    assert!(
        seen.get(&Code::Unavailable).copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
    let unexpected: Vec<_> = seen
        .keys()
        .filter(|c| {
            // between the restart and the new snapshots there is no stock to source
            !matches!(c, Code::Ok | Code::Unavailable | Code::FailedPrecondition)
        })
        .collect();
    assert!(unexpected.is_empty(), "{seen:?}");
    serves_again(&server).await;
    server.clock.advance_secs(20);
    settled_audit(&[redis.port], &p).await;
}

/// A `dom-router serve` process on Redis Cluster.
const SCARCE: [&str; 3] = ["SKU-0001", "SKU-0002", "SKU-0003"];

fn scarce_stock() -> Vec<(&'static str, &'static str, i64)> {
    vec![
        ("wh-getafe", "SKU-0001", 7),
        ("wh-zaragoza", "SKU-0001", 5),
        ("st-valencia", "SKU-0001", 2),
        ("wh-getafe", "SKU-0002", 9),
        ("wh-sabadell", "SKU-0002", 3),
        ("wh-getafe", "SKU-0003", 4),
    ]
}

/// Clients through every replica, each order 1–3 lines of the scarce skus; commits most,
/// releases some. Returns the units of each sku held by orders that were reserved.
async fn race(replicas: &[Replica], clients: usize, orders_each: usize) -> HashMap<Code, usize> {
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            // each order is reserved through one replica and committed or released through
            // the next: any replica finishes what another began
            let mut sourcing = replicas[c % replicas.len()].sourcing();
            let mut other = replicas[(c + 1) % replicas.len()].sourcing();
            tokio::spawn(async move {
                let mut seen: HashMap<Code, usize> = HashMap::new();
                for n in 0..orders_each {
                    let id = format!("c{c}-{n}");
                    let lines = (0..1 + (c + n) % 3)
                        .map(|i| line(&format!("l{i}"), SCARCE[(c + n + i) % 3], 1 + (i as i64)))
                        .collect();
                    let code = match sourcing
                        .reserve(common::reserve_request(order(&id, "vip", lines)))
                        .await
                    {
                        Ok(_) if n % 4 == 3 => other
                            .release(pb::ReleaseRequest {
                                order_id: id,
                                line_ids: vec![],
                            })
                            .await
                            .map_or_else(|e| e.code(), |_| Code::Ok),
                        Ok(_) => other
                            .commit(pb::CommitRequest { order_id: id })
                            .await
                            .map_or_else(|e| e.code(), |_| Code::Ok),
                        Err(e) => e.code(),
                    };
                    *seen.entry(code).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    let mut seen = HashMap::new();
    for t in tasks {
        merge(&mut seen, t.await.unwrap());
    }
    seen
}

/// The replicas' logs, and this test's turn: tests with replica processes run one at a time,
/// since several clusters of three replicas at once can starve a 2-core machine past the
/// replicas' Redis timeouts, which none of these tests is about.
struct Logs {
    dir: tempfile::TempDir,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl Logs {
    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A three-master cluster with three `dom-router` replicas on it under a key prefix of their
/// own; the replicas' logs go to the temporary directory.
async fn replicas_on_a_cluster() -> (RedisCluster, Logs, String, Vec<Replica>) {
    replicas_on_a_cluster_with(None).await
}

/// As [`replicas_on_a_cluster`], the replicas reading the config directory `config` if given.
async fn replicas_on_a_cluster_with(
    config: Option<&std::path::Path>,
) -> (RedisCluster, Logs, String, Vec<Replica>) {
    static TURNS: std::sync::LazyLock<Arc<tokio::sync::Mutex<()>>> =
        std::sync::LazyLock::new(|| Arc::new(tokio::sync::Mutex::new(())));
    let turn = TURNS.clone().lock_owned().await;
    let cluster = RedisCluster::start(3);
    let logs = Logs {
        dir: tempfile::tempdir().unwrap(),
        _turn: turn,
    };
    let p = prefix();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let setup = Setup {
            urls: &cluster.urls(),
            cluster: true,
            prefix: &p,
            logs: logs.path(),
            config,
        };
        replicas.push(Replica::start(&setup).await);
    }
    (cluster, logs, p, replicas)
}

fn cluster_ports(cluster: &RedisCluster) -> Vec<u16> {
    cluster.nodes.iter().map(|n| n.port).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_one_cluster_never_oversell() {
    let (cluster, _logs, p, replicas) = replicas_on_a_cluster().await;
    push_stock(&mut replicas[0].inventory(), &scarce_stock()).await;
    let seen = race(&replicas, 48, 6).await;
    // stock runs out: some orders are refused, and only for that reason
    assert!(seen.get(&Code::Ok).copied().unwrap_or(0) > 0, "{seen:?}");
    assert!(
        seen.get(&Code::FailedPrecondition).copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
    // ABORTED: stock moved under every one of the engine's plans; the checkout may retry
    let unexpected: Vec<_> = seen
        .keys()
        .filter(|c| !matches!(c, Code::Ok | Code::FailedPrecondition | Code::Aborted))
        .collect();
    assert!(unexpected.is_empty(), "{seen:?}");
    let audit = settled_audit(&cluster_ports(&cluster), &p).await;
    // orders did get units, and no more than there were
    let reserved: i64 = audit.levels.values().map(|l| l.1).sum();
    let on_hand: i64 = scarce_stock().iter().map(|r| r.2).sum();
    assert!(
        reserved > 0 && reserved <= on_hand,
        "{reserved} of {on_hand}"
    );
    drop(replicas);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_reservation_leaves_nothing_held() {
    let (cluster, _logs, p, mut replicas) = replicas_on_a_cluster().await;
    let rows: Vec<_> = SCARCE
        .iter()
        .flat_map(|sku| [("wh-getafe", *sku, 50_000), ("wh-zaragoza", *sku, 50_000)])
        .collect();
    push_stock(&mut replicas[0].inventory(), &rows).await;
    let load = {
        let channels: Vec<Channel> = replicas.iter().map(|r| r.channel.clone()).collect();
        tokio::spawn(async move {
            let tasks: Vec<_> = (0..24)
                .map(|c| {
                    let mut sourcing = SourcingClient::new(channels[c % 3].clone());
                    tokio::spawn(async move {
                        for n in 0..150 {
                            let lines = (0..3)
                                .map(|i| line(&format!("l{i}"), SCARCE[i], 1))
                                .collect();
                            let _ = sourcing
                                .reserve(common::reserve_request(order(
                                    &format!("k{c}-{n}"),
                                    "standard",
                                    lines,
                                )))
                                .await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    // SIGKILL: no drain, attempts cut off wherever they were
    replicas[0].kill();
    load.await.unwrap();
    // the survivors' sweeps roll back what the dead replica left unfinished
    let audit = settled_audit(&cluster_ports(&cluster), &p).await;
    assert!(audit.states.get("held").copied().unwrap_or(0) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_holds_return_once_with_every_replica_sweeping() {
    let (cluster, _logs, p, replicas) = replicas_on_a_cluster().await;
    push_stock(
        &mut replicas[0].inventory(),
        &[("wh-getafe", "SKU-0001", 1_000)],
    )
    .await;
    let hold = |id: String, ttl: u32| pb::ReserveRequest {
        order: Some(order(&id, "standard", vec![line("l1", "SKU-0001", 3)])),
        hold_ttl_seconds: ttl,
        strategy: 0,
    };
    for i in 0..30 {
        let mut sourcing = replicas[i % 3].sourcing();
        sourcing
            .reserve(hold(format!("short-{i}"), 1))
            .await
            .unwrap();
        if i % 3 == 0 {
            sourcing
                .reserve(hold(format!("long-{i}"), 600))
                .await
                .unwrap();
        }
    }
    // wait for every short hold to be expired by some replica's sweep
    let mut sourcing = replicas[1].sourcing();
    let started = Instant::now();
    loop {
        let mut expired = 0;
        for i in 0..30 {
            let r = sourcing
                .get_reservation(pb::GetReservationRequest {
                    order_id: format!("short-{i}"),
                })
                .await
                .unwrap()
                .into_inner();
            if r.reservation
                .is_some_and(|r| r.state == pb::ReservationState::Expired as i32)
            {
                expired += 1;
            }
        }
        if expired == 30 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{expired} of 30 expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let audit = settled_audit(&cluster_ports(&cluster), &p).await;
    // returned exactly once: what stays reserved is the long holds' units, no fewer
    assert_eq!(
        audit.levels[&("SKU-0001".into(), "wh-getafe".into())],
        (1_000, 30, 0)
    );
    assert_eq!(audit.states.get("expired"), Some(&30));
    assert_eq!(audit.states.get("held"), Some(&10));
}

/// Sends one feed update; it must be refused naming `field`, by the API (the whole request)
/// or by the store (the update), and change nothing.
async fn refused(inventory: &mut InventoryClient<Channel>, update: pb::StockUpdate, field: &str) {
    match inventory
        .set_stock(pb::SetStockRequest {
            updates: vec![update.clone()],
        })
        .await
    {
        Ok(summary) => {
            let summary = summary.into_inner();
            assert_eq!(
                (summary.applied, summary.rejected),
                (0, 1),
                "{update:?}: {summary:?}"
            );
            let reason = &summary.rejections[0].reason;
            assert!(reason.starts_with(&format!("{field}: ")), "{reason}");
        }
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains(field), "{status:?}");
        }
    }
}

async fn on_hand(inventory: &mut InventoryClient<Channel>, sku: &str) -> i64 {
    let reply = inventory
        .get_availability(pb::GetAvailabilityRequest {
            skus: vec![sku.into()],
            segment: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("{sku} cannot be read: {e:?}"))
        .into_inner();
    reply.skus[0].on_hand
}

/// A delta of +i64::MAX used to be applied and leave on hand at -2^63 in Redis, after which
/// the sku could not be read and no feed update of it could be applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feed_updates_beyond_the_limit_leave_the_sku_readable() {
    let single = RedisServer::start();
    let cluster = RedisCluster::start(3);
    for (urls, is_cluster) in [(vec![single.url()], false), (cluster.urls(), true)] {
        let p = prefix();
        let server = TestServer::start_with(patient(redis_config(urls, is_cluster, &p))).await;
        wait_for_health(&server.channel, ServingStatus::Serving).await;
        let mut inventory = server.inventory();
        push_stock(&mut inventory, &[("wh-getafe", "SKU-0001", 10)]).await;
        let update = |kind: pb::StockUpdateKind, quantity: i64, sequence: u64| pb::StockUpdate {
            node_id: "wh-getafe".into(),
            sku: "SKU-0001".into(),
            kind: kind as i32,
            quantity,
            sequence,
            order_id: String::new(),
            safety_stock: None,
            reorder_point: None,
            ..Default::default()
        };
        use pb::StockUpdateKind::{Delta, Snapshot};
        refused(&mut inventory, update(Delta, i64::MAX, 1_000), "quantity").await;
        refused(
            &mut inventory,
            update(Delta, i64::MIN + 1, 1_001),
            "quantity",
        )
        .await;
        refused(
            &mut inventory,
            update(Snapshot, i64::MAX, 1_002),
            "quantity",
        )
        .await;
        // above 2^53: a Lua number would read it back one less
        refused(
            &mut inventory,
            update(Snapshot, 9_007_199_254_740_993, 1_003),
            "quantity",
        )
        .await;
        let mut safety = update(Snapshot, 5, 1_004);
        safety.safety_stock = Some(i64::MAX);
        refused(&mut inventory, safety, "safety_stock").await;
        assert_eq!(
            on_hand(&mut inventory, "SKU-0001").await,
            10,
            "cluster: {is_cluster}"
        );
        // the level still takes updates
        let summary = inventory
            .set_stock(pb::SetStockRequest {
                updates: vec![update(Delta, 1, 1_005)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(summary.applied, 1, "{summary:?}");
        assert_eq!(on_hand(&mut inventory, "SKU-0001").await, 11);
        drop(server);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reserve_of_an_order_in_flight_waits_for_its_outcome() {
    // a cluster reserve goes in steps, so a second Reserve of the same order id can arrive
    // half-way through the first: it gets the first one's reservation, not UNAVAILABLE
    let cluster = RedisCluster::start(3);
    let p = prefix();
    let server = TestServer::start_with(patient(redis_config(cluster.urls(), true, &p))).await;
    wait_for_health(&server.channel, ServingStatus::Serving).await;
    push_stock(
        &mut server.inventory(),
        &[
            ("wh-getafe", "TWIN-1", 1_000),
            ("wh-getafe", "TWIN-2", 1_000),
        ],
    )
    .await;
    let mut calls = Vec::new();
    for i in 0..40 {
        for _ in 0..3 {
            let mut sourcing = server.sourcing();
            let request = common::reserve_request(order(
                &format!("twin-{i}"),
                "standard",
                vec![line("1", "TWIN-1", 1), line("2", "TWIN-2", 2)],
            ));
            calls.push(tokio::spawn(
                async move { (i, sourcing.reserve(request).await) },
            ));
        }
    }
    let mut created = HashMap::new();
    for call in calls {
        let (i, result) = call.await.unwrap();
        let answer = result
            .unwrap_or_else(|s| panic!("twin-{i}: {s:?}"))
            .into_inner();
        let r = answer.reservation.unwrap();
        assert_eq!(r.allocations.iter().map(|a| a.quantity).sum::<i64>(), 3);
        *created.entry(i).or_insert(0) += usize::from(answer.created);
    }
    assert!(created.values().all(|&n| n == 1), "{created:?}");
    let audit = settled_audit(&cluster_ports(&cluster), &p).await;
    audit.assert_consistent();
}

/// Events of a watch, deduplicated by key, until `done` says enough or `within` passes.
async fn watched(
    stream: &mut tonic::Streaming<pb::Event>,
    within: Duration,
    mut done: impl FnMut(&[pb::Event]) -> bool,
) -> Vec<pb::Event> {
    use tokio_stream::StreamExt;
    let mut seen = std::collections::HashSet::new();
    let mut events = Vec::new();
    let until = Instant::now() + within;
    while !done(&events) {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.next()).await {
            Ok(Some(Ok(e))) => {
                if seen.insert(e.key.clone()) {
                    events.push(e);
                }
            }
            Ok(other) => panic!("the watch ended: {other:?}"),
            Err(_) => break,
        }
    }
    events
}

fn created_orders(events: &[pb::Event]) -> std::collections::HashSet<String> {
    events
        .iter()
        .filter(|e| e.kind == pb::EventKind::ReservationCreated as i32)
        .filter_map(|e| match &e.change {
            Some(pb::event::Change::Reservation(r)) => Some(r.order_id.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_change_has_its_event_on_every_replica_even_with_one_killed() {
    use pb::events_client::EventsClient;
    let (_cluster, _logs, _p, mut replicas) = replicas_on_a_cluster().await;
    let rows: Vec<_> = SCARCE
        .iter()
        .flat_map(|sku| [("wh-getafe", *sku, 50_000), ("wh-zaragoza", *sku, 50_000)])
        .collect();
    push_stock(&mut replicas[0].inventory(), &rows).await;
    // a watcher on the replica that stays, from now: reservations only
    let mut live = EventsClient::new(replicas[2].channel.clone())
        .watch(pb::WatchRequest {
            kinds: vec![pb::EventKind::ReservationCreated as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let channels: Vec<Channel> = replicas.iter().map(|r| r.channel.clone()).collect();
    let load = tokio::spawn(async move {
        let tasks: Vec<_> = (0..16)
            .map(|c| {
                let mut sourcing = SourcingClient::new(channels[c % 2].clone());
                tokio::spawn(async move {
                    let mut acknowledged = Vec::new();
                    for n in 0..60 {
                        let id = format!("e{c}-{n}");
                        let lines = (0..2)
                            .map(|i| line(&format!("l{i}"), SCARCE[i], 1))
                            .collect();
                        if sourcing
                            .reserve(common::reserve_request(order(&id, "standard", lines)))
                            .await
                            .is_ok()
                        {
                            acknowledged.push(id);
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        let mut acknowledged = Vec::new();
        for t in tasks {
            acknowledged.extend(t.await.unwrap());
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SIGKILL: whatever its scripts wrote to their outboxes, another replica moves
    replicas[0].kill();
    let acknowledged: std::collections::HashSet<String> = load.await.unwrap().into_iter().collect();
    assert!(acknowledged.len() > 100, "{}", acknowledged.len());
    let events = watched(&mut live, Duration::from_secs(30), |events| {
        acknowledged.is_subset(&created_orders(events))
    })
    .await;
    let reported = created_orders(&events);
    let missing: Vec<_> = acknowledged.difference(&reported).collect();
    assert!(
        missing.is_empty(),
        "acknowledged without an event: {missing:?}"
    );
    // a watcher of the other surviving replica, resuming after an event the first one got,
    // gets the same events from there on, none missed
    let cut = events.len() / 2;
    let mut resumed = EventsClient::new(replicas[1].channel.clone())
        .watch(pb::WatchRequest {
            after: events[cut].id.clone(),
            kinds: vec![pb::EventKind::ReservationCreated as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let wanted: std::collections::HashSet<String> =
        events[cut + 1..].iter().map(|e| e.key.clone()).collect();
    let again = watched(&mut resumed, Duration::from_secs(10), |got| {
        wanted.is_subset(&got.iter().map(|e| e.key.clone()).collect())
    })
    .await;
    let keys: std::collections::HashSet<String> = again.iter().map(|e| e.key.clone()).collect();
    assert!(
        wanted.is_subset(&keys),
        "{} of {} after the cursor",
        keys.len(),
        wanted.len()
    );
    assert!(
        !keys.contains(&events[cut].key),
        "the cursor's own event came again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_alert_crossing_is_reported_once_by_replicas_that_all_see_it() {
    use pb::events_client::EventsClient;
    // the demo thresholds: 20 at a warehouse, hysteresis 2; every replica follows the log and
    // looks at every sku it names
    let (_cluster, _logs, _p, replicas) = replicas_on_a_cluster().await;
    let skus: Vec<String> = (0..12).map(|n| format!("LOW-{n:02}")).collect();
    let mut watch = EventsClient::new(replicas[2].channel.clone())
        .watch(pb::WatchRequest {
            skus: skus.clone(),
            node_ids: vec!["wh-getafe".into()],
            kinds: vec![
                pb::EventKind::LowStock as i32,
                pb::EventKind::StockRecovered as i32,
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let low = pb::EventKind::LowStock as i32;
    let up = pb::EventKind::StockRecovered as i32;
    // each step moves every sku through another replica, and waits for what it must report
    let steps = [(100, None), (10, Some(low)), (30, Some(up)), (5, Some(low))];
    let mut events = Vec::new();
    for (n, (on_hand, reports)) in steps.into_iter().enumerate() {
        let rows: Vec<_> = skus
            .iter()
            .map(|s| ("wh-getafe", s.as_str(), on_hand))
            .collect();
        push_stock(&mut replicas[n % 3].inventory(), &rows).await;
        let expected = if reports.is_some() { skus.len() } else { 0 };
        let step = watched(&mut watch, Duration::from_secs(10), |got| {
            got.len() >= expected
        })
        .await;
        assert_eq!(step.len(), expected, "step {n}: {step:?}");
        events.extend(step);
    }
    // and nothing more comes: three replicas saw each crossing, one reported it
    let more = watched(&mut watch, Duration::from_secs(2), |got| !got.is_empty()).await;
    assert_eq!(more.len(), 0, "reported twice: {more:?}");
    for sku in &skus {
        let kinds: Vec<(i32, i64)> = events
            .iter()
            .filter_map(|e| match &e.change {
                Some(pb::event::Change::Alert(a)) if &a.sku == sku => Some((e.kind, a.ats)),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, [(low, 10), (up, 30), (low, 5)], "{sku}");
    }
}

async fn reservation(replica: &Replica, order_id: &str) -> pb::Reservation {
    replica
        .sourcing()
        .get_reservation(pb::GetReservationRequest {
            order_id: order_id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap()
}

/// Units of each order: outstanding at its nodes, waiting, and cancelled by its reroutes.
fn accounted(r: &pb::Reservation) -> i64 {
    let outstanding: i64 = r
        .allocations
        .iter()
        .map(|a| a.quantity - a.shipped - a.released)
        .sum();
    let waiting: i64 = r.waiting.iter().map(|w| w.units).sum();
    let cancelled: i64 = r
        .history
        .iter()
        .flat_map(|d| &d.outcomes)
        .filter(|o| o.fate == pb::UnitFate::Cancelled as i32)
        .map(|o| o.units)
        .sum();
    outstanding + waiting + cancelled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_reroute_at_once_and_one_killed_leaves_nothing_half_done() {
    let (cluster, _logs, p, mut replicas) = replicas_on_a_cluster().await;
    let skus = ["RRS-A", "RRS-B"];
    let nodes = ["wh-getafe", "wh-zaragoza", "wh-sabadell", "wh-sevilla"];
    let rows: Vec<_> = skus
        .iter()
        .flat_map(|sku| nodes.iter().map(move |n| (*n, *sku, 40)))
        .collect();
    push_stock(&mut replicas[0].inventory(), &rows).await;
    // 40 held orders of three units, two lines
    let orders = 40;
    for i in 0..orders {
        let lines = vec![line("l0", skus[0], 2), line("l1", skus[1], 1)];
        replicas[i % 3]
            .sourcing()
            .reserve(common::reserve_request(order(
                &format!("q{i}"),
                "standard",
                lines,
            )))
            .await
            .unwrap();
    }
    // every order's first node turns it down, twice over under one id, through two replicas
    // at once; a third of the way in, one replica is killed
    let mut firsts = Vec::new();
    for i in 0..orders {
        let r = reservation(&replicas[1], &format!("q{i}")).await;
        firsts.push(r.allocations[0].node_id.clone());
    }
    let request = |i: usize, node: &str| pb::RerouteRequest {
        order_id: format!("q{i}"),
        node_id: node.to_owned(),
        lines: Vec::new(),
        reason: pb::RerouteReason::StoreRejected as i32,
        reroute_id: format!("rj-{i}"),
    };
    let channels: Vec<Channel> = replicas.iter().map(|r| r.channel.clone()).collect();
    let calls: Vec<_> = (0..orders)
        .flat_map(|i| [(i, i % 3), (i, (i + 1) % 3)])
        .map(|(i, via)| {
            let mut sourcing = SourcingClient::new(channels[via].clone());
            let request = request(i, &firsts[i]);
            tokio::spawn(async move { sourcing.reroute(request).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    replicas[0].kill();
    let mut cut_off = Vec::new();
    for (n, call) in calls.into_iter().enumerate() {
        if let Err(e) = call.await.unwrap() {
            // the killed replica's calls, or a call that waited on one it cut off
            assert!(
                matches!(
                    e.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled
                ),
                "{e:?}"
            );
            cut_off.push(n / 2);
        }
    }
    // a checkout whose call was cut off sends it again to a survivor: done once either way
    for i in cut_off {
        let answer = replicas[1]
            .sourcing()
            .reroute(request(i, &firsts[i]))
            .await
            .unwrap()
            .into_inner();
        assert!(answer.reservation.is_some());
    }
    settled_audit(&cluster_ports(&cluster), &p).await;
    for (i, first) in firsts.iter().enumerate() {
        let r = reservation(&replicas[2], &format!("q{i}")).await;
        // one reroute, whichever replica made it; no unit lost or doubled; none left at the
        // node that turned the order down
        let reroutes = r
            .history
            .iter()
            .filter(|d| d.reroute_id == format!("rj-{i}"))
            .count();
        assert_eq!(reroutes, 1, "q{i}: {:?}", r.history);
        assert_eq!(accounted(&r), 3, "q{i}: {r:?}");
        assert!(
            r.allocations
                .iter()
                .filter(|a| &a.node_id == first)
                .all(|a| a.quantity - a.shipped - a.released == 0),
            "q{i}: {r:?}"
        );
    }
    drop(replicas);
}

/// The demo config with marketplace orders backordered too (behind standard's priority), in a
/// directory of its own.
fn backorder_config() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for entry in std::fs::read_dir(&demo).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let segments = dir.path().join("segments.toml");
    let text = std::fs::read_to_string(&segments).unwrap();
    let marketplace = text.find("[segment.marketplace]").unwrap();
    let (head, tail) = text.split_at(marketplace);
    let tail = tail.replacen("unfilled = \"partial\"", "unfilled = \"backorder\"", 1);
    std::fs::write(&segments, format!("{head}{tail}")).unwrap();
    dir
}

/// Units held (outstanding) and waiting of a reservation, and how many fills it had.
fn held_waiting_fills(r: &pb::Reservation) -> (i64, i64, usize) {
    let held = r
        .allocations
        .iter()
        .map(|a| a.quantity - a.shipped - a.released)
        .sum();
    let waiting = r.waiting.iter().map(|w| w.units).sum();
    let fills = r
        .history
        .iter()
        .filter(|d| d.kind == pb::decision::Kind::Filled as i32)
        .count();
    (held, waiting, fills)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_fill_waiting_orders_once_in_priority_order_with_the_filler_killed() {
    let config = backorder_config();
    let (cluster, logs, p, mut replicas) = replicas_on_a_cluster_with(Some(config.path())).await;
    // nothing in stock: 12 marketplace and 12 standard orders of 2 units wait, interleaved,
    // created through every replica
    let orders: Vec<(String, &str)> = (0..24)
        .map(|i| {
            let segment = if i % 2 == 0 {
                "marketplace"
            } else {
                "standard"
            };
            (format!("bf{i:02}"), segment)
        })
        .collect();
    for (i, (id, segment)) in orders.iter().enumerate() {
        let r = replicas[i % 3]
            .sourcing()
            .reserve(common::reserve_request(order(
                id,
                segment,
                vec![line("l1", "BF-A", 2)],
            )))
            .await
            .unwrap()
            .into_inner()
            .reservation
            .unwrap();
        assert_eq!(held_waiting_fills(&r), (0, 2, 0), "{id}");
        // each waits from a later millisecond than the one before
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // the replica that fills: the one whose log says it took the lease
    let mut filler = None;
    for _ in 0..100 {
        filler = replicas.iter().position(|r| {
            std::fs::read_to_string(&r.log)
                .unwrap_or_default()
                .contains("this replica fills waiting units")
        });
        if filler.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let filler = filler.expect("a replica took the fill lease");
    let other = (filler + 1) % 3;
    // 16 units arrive, enough for 8 orders; the filler is killed as it fills
    push_stock(
        &mut replicas[other].inventory(),
        &[("wh-zaragoza", "BF-A", 16)],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(15)).await;
    replicas[filler].kill();
    let survivor = &replicas[(filler + 2) % 3];
    let read_all = || async {
        let mut all = Vec::new();
        for (id, segment) in &orders {
            let r = reservation(survivor, id).await;
            all.push((id.clone(), *segment, held_waiting_fills(&r)));
        }
        all
    };
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut all = read_all().await;
    while all.iter().map(|o| o.2.0).sum::<i64>() < 16 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
        all = read_all().await;
    }
    // the first eight standard orders, oldest first, have their units, once; nothing else does
    let standard: Vec<_> = all.iter().filter(|o| o.1 == "standard").collect();
    for (n, (id, _, state)) in standard.iter().enumerate() {
        let want = if n < 8 { (2, 0, 1) } else { (0, 2, 0) };
        assert_eq!(*state, want, "{id}: {all:?}");
    }
    for (id, _, state) in all.iter().filter(|o| o.1 == "marketplace") {
        assert_eq!(*state, (0, 2, 0), "{id}: {all:?}");
    }
    // 32 more units: every order waiting is filled, each once
    push_stock(
        &mut replicas[other].inventory(),
        &[("wh-zaragoza", "BF-A", 48)],
    )
    .await;
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut all = read_all().await;
    while all.iter().map(|o| o.2.0).sum::<i64>() < 48 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
        all = read_all().await;
    }
    for (id, _, state) in &all {
        assert_eq!(*state, (2, 0, 1), "{id}: {all:?}");
    }
    let audit = settled_audit(&cluster_ports(&cluster), &p).await;
    let reserved: i64 = audit.levels.values().map(|l| l.1).sum();
    assert_eq!(reserved, 48, "every unit held once, none oversold");
    drop(replicas);
    drop(logs);
}

/// The demo config with look-ahead on, its prices computed every second.
fn lookahead_config() -> tempfile::TempDir {
    let dir = backorder_config();
    let segments = dir.path().join("segments.toml");
    let text = std::fs::read_to_string(&segments).unwrap();
    let on = text.replacen(
        "[lookahead]\nenabled = false",
        "[lookahead]\nenabled = true\nrefresh_secs = 1",
        1,
    );
    assert_ne!(on, text, "segments.toml has a [lookahead] section");
    std::fs::write(&segments, on).unwrap();
    dir
}

/// Whether a replica's quote keeps the Getafe DC's units for Madrid's demand.
async fn keeps_getafe(replica: &Replica) -> bool {
    let (node, getafe, _) = common::guadalajara_quote(replica.sourcing(), "LA-X").await;
    node == "wh-zaragoza" && getafe.starts_with("kept for later demand: +")
}

fn said(replica: &Replica, text: &str) -> bool {
    std::fs::read_to_string(&replica.log)
        .unwrap_or_default()
        .contains(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_look_ahead_prices_another_takes_over_from_a_killed_holder_and_a_stopped_one_lets_go()
 {
    let redis = RedisServer::start();
    let config = lookahead_config();
    let logs = tempfile::tempdir().unwrap();
    let p = prefix();
    let urls = [redis.url()];
    let setup = Setup {
        urls: &urls,
        cluster: false,
        prefix: &p,
        logs: logs.path(),
        config: Some(config.path()),
    };
    let mut replicas = [Replica::start(&setup).await, Replica::start(&setup).await];
    push_stock(
        &mut replicas[0].inventory(),
        &[("wh-getafe", "LA-X", 2), ("wh-zaragoza", "LA-X", 40)],
    )
    .await;
    // no demand learned yet: no price, and Guadalajara ships from Getafe, nearest
    let quoted = common::guadalajara_quote(replicas[0].sourcing(), "LA-X").await;
    assert_eq!(quoted.0, "wh-getafe");
    // orders of one unit to Madrid through the second replica, each reserved then released:
    // learned as demand (more than there is), and the stock back where it was. Getafe's units
    // are worth more to Madrid than to Guadalajara: shipping from Zaragoza instead costs
    // Guadalajara less extra than it would cost Madrid
    common::madrid_demand(replicas[1].sourcing(), "LA-X", "la", 6).await;
    // both replicas take up the table the lease holder computed from it
    let started = Instant::now();
    while !(keeps_getafe(&replicas[0]).await && keeps_getafe(&replicas[1]).await) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "prices were not shared; see {}",
            logs.path().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let computes = "this replica computes look-ahead's prices";
    let holder = replicas
        .iter()
        .position(|r| said(r, computes))
        .expect("a replica took the lease");
    assert!(
        !said(&replicas[1 - holder], computes),
        "only one replica computes"
    );
    let version_key = format!("{p}:{{la}}:pv");
    let version = || -> u64 {
        command(redis.port, &["GET", &version_key])
            .unwrap()
            .parse()
            .unwrap_or(0)
    };
    // SIGKILL: the lease is not let go, so the other replica takes over once it lapses
    replicas[holder].kill();
    let at_kill = version();
    assert!(at_kill >= 1);
    let survivor = &replicas[1 - holder];
    let started = Instant::now();
    while !(said(survivor, computes) && version() > at_kill) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the survivor did not take over; see {}",
            logs.path().display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(keeps_getafe(survivor).await);
    // a graceful stop lets the lease go as the holder exits, where a kill leaves it to lapse
    let lease = format!("{p}:{{w:lookahead}}:lease");
    assert_eq!(command(redis.port, &["EXISTS", &lease]).unwrap(), ":1");
    replicas[1 - holder].terminate();
    assert_eq!(command(redis.port, &["EXISTS", &lease]).unwrap(), ":0");
}
