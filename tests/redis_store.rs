//! The store suite of the in-memory store, unchanged, against a real Redis and a real Redis
//! Cluster of three masters; and what only a shared store can get wrong: attempts abandoned by
//! a replica that died, and a Redis that lost its data.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use common::redis::{Audit, RedisCluster, RedisServer, command};
use dom_router::config::{Config, ConfigSource, RedisSettings};
use dom_router::store::{RedisStore, StockStore};

fn single() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start(3))
}

/// Settings for a store of its own: a key prefix no other test uses.
fn settings(urls: Vec<String>, cluster: bool) -> RedisSettings {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut s = Config::load(ConfigSource::Embedded, std::iter::empty())
        .unwrap()
        .settings
        .store
        .redis;
    s.urls = urls;
    s.cluster = cluster;
    s.key_prefix = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
    s
}

fn store(urls: Vec<String>, cluster: bool) -> Arc<dyn StockStore> {
    Arc::new(RedisStore::new(&settings(urls, cluster), Vec::new()).unwrap())
}

mod single_redis {
    dom_router::store_conformance_tests!(async {
        super::store(vec![super::single().url()], false)
    });
}

mod redis_cluster {
    dom_router::store_conformance_tests!(async { super::store(super::cluster().urls(), true) });
}

#[tokio::test]
async fn a_redis_that_lost_its_data_is_noticed() {
    let mut server = RedisServer::start();
    let store = RedisStore::new(&settings(vec![server.url()], false), Vec::new()).unwrap();
    store.ping().await.unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.data_losses(), 0);
    server.restart();
    // the connection breaks with the restart; the store reconnects by itself
    let mut answered = false;
    for _ in 0..100 {
        if store.ping().await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(answered, "the store did not reconnect after the restart");
    assert_eq!(store.data_losses(), 1);
    store.ping().await.unwrap();
    assert_eq!(store.data_losses(), 1);
}

#[tokio::test]
async fn seed_stock_fills_only_levels_redis_lacks() {
    use dom_router::config::StockSeed;
    use dom_router::store::{StockUpdate, UpdateKind};
    let server = RedisServer::start();
    let s = settings(vec![server.url()], false);
    let seed = vec![
        StockSeed {
            sku: "A".into(),
            node: "n1".into(),
            on_hand: 10,
            safety_stock: 2,
        },
        StockSeed {
            sku: "A".into(),
            node: "n2".into(),
            on_hand: 5,
            safety_stock: 0,
        },
    ];
    let first = RedisStore::new(&s, seed.clone()).unwrap();
    first.ping().await.unwrap();
    let update = StockUpdate {
        node_id: "n1".into(),
        sku: "A".into(),
        sequence: 1,
        kind: UpdateKind::Snapshot {
            on_hand: 3,
            safety_stock: None,
            reorder_point: dom_router::store::ReorderPoint::Keep,
        },
    };
    first.apply_updates(&[update], 0).await.unwrap();
    // another replica starting with the same seed changes nothing
    let second = RedisStore::new(&s, seed).unwrap();
    second.ping().await.unwrap();
    let view = second.read_stock(&["A".into()], 0).await.unwrap();
    assert_eq!(view["A"]["n1"].on_hand, 3);
    assert_eq!(view["A"]["n1"].safety_stock, 2);
    assert_eq!(view["A"]["n2"].on_hand, 5);
}

mod unreadable {
    //! Levels written by something other than the store: every script copes, reads and
    //! feeds say which level is bad, and a snapshot repairs it without losing a hold.

    use dom_router::config::RedisSettings;
    use dom_router::store::conformance::empty_plan;
    use dom_router::store::{
        Allocation, HoldRequest, RedisStore, ReserveOutcome, StockStore, StockUpdate, StoreError,
        UpdateKind, UpdateResult,
    };

    use super::common::redis::command;

    const T0: i64 = 1_800_000_000_000;

    fn update(node: &str, sku: &str, sequence: u64, kind: UpdateKind) -> StockUpdate {
        StockUpdate {
            node_id: node.into(),
            sku: sku.into(),
            sequence,
            kind,
        }
    }

    fn snapshot(node: &str, seq: u64, on_hand: u64, safety: Option<u64>) -> StockUpdate {
        update(
            node,
            "A",
            seq,
            UpdateKind::Snapshot {
                on_hand,
                safety_stock: safety,
                reorder_point: dom_router::store::ReorderPoint::Keep,
            },
        )
    }

    fn hold(order: &str, node: &str, quantity: u64) -> HoldRequest {
        HoldRequest {
            order_id: order.into(),
            fingerprint: order.into(),
            segment: "standard".into(),
            use_safety_stock: false,
            plan: empty_plan(),
            allocations: vec![Allocation {
                line_id: "l1".into(),
                sku: "A".into(),
                node_id: node.into(),
                quantity,
                shipped: 0,
                released: 0,
                rejected: 0,
            }],
            expires_at: T0 + 600_000,
            capacity_day: 20_000,
            capacity_limits: vec![(node.into(), 1_000)],
            closed: Vec::new(),
            order: None,
            waiting: Vec::new(),
        }
    }

    /// Stored texts no version of the store writes, and the safety stock a repair keeps.
    const BAD: [(&str, u64); 11] = [
        ("garbage", 0),
        ("", 0),
        ("-1,5,4,1,0", 4),
        ("10,-5,4,1,0", 4),
        ("100000000000000000000,5,4,1,0", 4),
        ("1000000000001,5,4,1,0", 4),
        ("10,5,4", 0),
        ("10,5,4,1,0,7,1", 0),
        ("10,5,4,1,0,-7", 4),
        ("10,5,4,1,0,", 4),
        ("10,5,4,99999999999999999999,0", 4),
    ];

    pub async fn case(settings: RedisSettings, port_of: impl Fn(&str) -> u16) {
        let store = RedisStore::new(&settings, Vec::new()).unwrap();
        let s: &dyn StockStore = &store;
        let key = format!("{}:{{s:A}}:lv", settings.key_prefix);
        let port = port_of(&key);
        let r = s
            .apply_updates(
                &[
                    snapshot("n1", 1, 10, Some(4)),
                    snapshot("n2", 1, 5, Some(0)),
                    update(
                        "n1",
                        "B",
                        1,
                        UpdateKind::Snapshot {
                            on_hand: 3,
                            safety_stock: None,
                            reorder_point: dom_router::store::ReorderPoint::Keep,
                        },
                    ),
                ],
                T0,
            )
            .await
            .unwrap();
        assert!(r.iter().all(|r| *r == UpdateResult::Applied), "{r:?}");
        // two orders hold units at n1: one held, one committed
        for (order, units) in [("o1", 3), ("o2", 2)] {
            let outcome = s.reserve(hold(order, "n1", units), T0).await.unwrap();
            assert!(matches!(outcome, ReserveOutcome::Created(_)), "{outcome:?}");
        }
        s.commit("o2", T0).await.unwrap();
        let mut seq = 10;
        for (n, (bad, safety_kept)) in BAD.iter().enumerate() {
            assert_eq!(
                command(port, &["HSET", &key, "n1", bad]).unwrap(),
                ":0",
                "{bad:?}"
            );
            // reads of the sku say which level is bad, and how to repair it
            let e = s.read_stock(&["A".into()], T0).await.unwrap_err();
            let StoreError::Corrupt(why) = &e else {
                panic!("{bad:?}: {e:?}")
            };
            assert!(
                why.contains("\"A\"") && why.contains("\"n1\"") && why.contains("snapshot"),
                "{why}"
            );
            assert_eq!(
                s.read_stock(&["B".into()], T0).await.unwrap()["B"]["n1"].on_hand,
                3
            );
            // feeds of the bad level are refused by name; the sku's other nodes go on
            seq += 1;
            let r = s
                .apply_updates(
                    &[
                        update("n1", "A", seq, UpdateKind::Delta { change: 1 }),
                        update(
                            "n1",
                            "A",
                            seq + 1,
                            UpdateKind::Shipment {
                                order_id: "o2".into(),
                                quantity: 1,
                            },
                        ),
                        update("n2", "A", seq, UpdateKind::Delta { change: 1 }),
                    ],
                    T0,
                )
                .await
                .unwrap();
            for result in &r[..2] {
                assert!(
                    matches!(result, UpdateResult::Rejected(why) if why.contains("A at n1") && why.contains("cannot be read")),
                    "{bad:?}: {r:?}"
                );
            }
            assert_eq!(r[2], UpdateResult::Applied, "{bad:?}");
            // a hold there is refused as corrupt, and leaves nothing behind
            let order = format!("x{n}");
            let e = s.reserve(hold(&order, "n1", 1), T0).await.unwrap_err();
            assert!(
                matches!(&e, StoreError::Corrupt(why) if why.contains("\"n1\"") && why.contains("\"A\"")),
                "{bad:?}: {e:?}"
            );
            assert!(s.get_reservation(&order, T0).await.unwrap().is_none());
            let elsewhere = s
                .reserve(hold(&format!("y{n}"), "n2", 1), T0)
                .await
                .unwrap();
            assert!(
                matches!(elsewhere, ReserveOutcome::Created(_)),
                "{elsewhere:?}"
            );
            s.release(&format!("y{n}"), &[], T0).await.unwrap();
            // a snapshot repairs it, keeping every hold
            let r = s
                .apply_updates(&[snapshot("n1", 2, 20, None)], T0)
                .await
                .unwrap();
            assert_eq!(r, vec![UpdateResult::Applied], "{bad:?}");
            let l = s.read_stock(&["A".into()], T0).await.unwrap()["A"]["n1"];
            assert_eq!(
                (l.on_hand, l.reserved, l.safety_stock, l.last_sequence),
                (20, 5, *safety_kept, 2),
                "{bad:?}"
            );
            let r = s
                .apply_updates(&[snapshot("n1", 3, 10, Some(4))], T0)
                .await
                .unwrap();
            assert_eq!(r, vec![UpdateResult::Applied], "{bad:?}");
        }
        // an unreadable sequence is replaced even by a lower one; a readable one still keeps
        // older snapshots out
        for (bad, stale) in [("x,5,4,90,0", true), ("10,5,4,9x,0", false)] {
            command(port, &["HSET", &key, "n1", bad]).unwrap();
            let r = s
                .apply_updates(&[snapshot("n1", 50, 10, None)], T0)
                .await
                .unwrap();
            let want = if stale {
                UpdateResult::Stale
            } else {
                UpdateResult::Applied
            };
            assert_eq!(r, vec![want], "{bad:?}");
        }
        command(port, &["HSET", &key, "n1", "x,5,4,90,0"]).unwrap();
        let r = s
            .apply_updates(&[snapshot("n1", 91, 10, None)], T0)
            .await
            .unwrap();
        assert_eq!(r, vec![UpdateResult::Applied]);
        assert_eq!(
            s.read_stock(&["A".into()], T0).await.unwrap()["A"]["n1"].last_sequence,
            91
        );
        // the holds kept through every repair still give back and ship exactly
        s.release("o1", &[], T0).await.unwrap();
        let r = s
            .apply_updates(
                &[update(
                    "n1",
                    "A",
                    92,
                    UpdateKind::Shipment {
                        order_id: "o2".into(),
                        quantity: 2,
                    },
                )],
                T0,
            )
            .await
            .unwrap();
        assert_eq!(r, vec![UpdateResult::Applied]);
        let l = s.read_stock(&["A".into()], T0).await.unwrap()["A"]["n1"];
        assert_eq!((l.on_hand, l.reserved, l.safety_stock), (8, 0, 4));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreadable_levels_on_a_single_redis() {
    let server = single();
    unreadable::case(settings(vec![server.url()], false), |_| server.port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreadable_levels_on_a_cluster() {
    let c = cluster();
    unreadable::case(settings(c.urls(), true), |key| c.master_of(key).port).await;
}

/// Script calls Redis has run since its stats were reset.
fn script_calls(port: u16) -> u64 {
    let Ok(common::redis::Resp::Bulk(Some(info))) =
        common::redis::query(port, &["INFO", "commandstats"])
    else {
        panic!("INFO commandstats did not answer");
    };
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_leave_expired_holds_out_and_sweepers_share_the_work() {
    use dom_router::store::conformance::empty_plan;
    use dom_router::store::{Allocation, HoldRequest, ReserveOutcome, StockUpdate, UpdateKind};
    const T0: i64 = 1_800_000_000_000;
    const HOLDS: u64 = 40;
    const CALLERS: usize = 16;
    let server = RedisServer::start();
    let s = settings(vec![server.url()], false);
    let store = Arc::new(RedisStore::new(&s, Vec::new()).unwrap());
    let update = StockUpdate {
        node_id: "n1".into(),
        sku: "A".into(),
        sequence: 1,
        kind: UpdateKind::Snapshot {
            on_hand: 1_000,
            safety_stock: None,
            reorder_point: dom_router::store::ReorderPoint::Keep,
        },
    };
    store.apply_updates(&[update], T0).await.unwrap();
    let hold = |order: String, units: u64, expires_at: i64| HoldRequest {
        order_id: order.clone(),
        fingerprint: order,
        segment: "standard".into(),
        use_safety_stock: false,
        plan: empty_plan(),
        allocations: vec![Allocation {
            line_id: "l1".into(),
            sku: "A".into(),
            node_id: "n1".into(),
            quantity: units,
            shipped: 0,
            released: 0,
            rejected: 0,
        }],
        expires_at,
        capacity_day: 20_000,
        capacity_limits: Vec::new(),
        closed: Vec::new(),
        order: None,
        waiting: Vec::new(),
    };
    for i in 0..HOLDS {
        let outcome = store
            .reserve(hold(format!("short-{i}"), 2, T0 + 1_000), T0)
            .await
            .unwrap();
        assert!(matches!(outcome, ReserveOutcome::Created(_)));
    }
    store
        .reserve(hold("long".into(), 1, T0 + 600_000), T0)
        .await
        .unwrap();
    // one hold expired and swept first, so that every script is loaded before counting
    store
        .reserve(hold("warm-up".into(), 1, T0 + 500), T0)
        .await
        .unwrap();
    assert_eq!(store.expire_holds(T0 + 500).await.unwrap(), 1);
    let at = T0 + 1_000;
    let skus = ["A".to_owned()];
    command(server.port, &["CONFIG", "RESETSTAT"]).unwrap();
    // many requests read at once as the holds fall due: each sees them gone, none writes
    let reads = (0..CALLERS).map(|_| {
        let store = store.clone();
        let skus = skus.clone();
        tokio::spawn(async move { store.read_state(&skus, 20_000, at).await.unwrap() })
    });
    for read in futures_util::future::join_all(reads).await {
        let (stock, used) = read.unwrap();
        assert_eq!(stock["A"]["n1"].reserved, 1);
        assert_eq!(used["n1"], 1);
    }
    assert_eq!(script_calls(server.port), 0, "reads ran scripts");
    let audit = Audit::read(&[server.port], &s.key_prefix);
    assert_eq!(
        audit.levels[&("A".into(), "n1".into())].1,
        2 * HOLDS as i64 + 1
    );
    assert_eq!(audit.states.get("held"), Some(&(HOLDS as usize + 1)));
    // as many sweeps at once: each hold is settled by one of them
    let started = std::time::Instant::now();
    let sweeps = (0..CALLERS).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.expire_holds(at).await.unwrap() })
    });
    let expired: u64 = futures_util::future::join_all(sweeps)
        .await
        .into_iter()
        .map(|n| n.unwrap())
        .sum();
    let took = started.elapsed();
    let calls = script_calls(server.port);
    eprintln!("{CALLERS} sweeps of {HOLDS} due holds: {calls} script calls in {took:?}");
    assert_eq!(expired, HOLDS);
    // settling one hold is three scripts: the record, the sku, the capacity
    assert!(calls <= 3 * HOLDS, "{calls} script calls for {HOLDS} holds");
    let audit = Audit::read(&[server.port], &s.key_prefix);
    audit.assert_consistent();
    assert_eq!(audit.levels[&("A".into(), "n1".into())].1, 1);
    assert_eq!(audit.states.get("expired"), Some(&(HOLDS as usize + 1)));
}

/// Releases of different lines of one order at one node, at the same time, round after
/// round: each gives back its own line's stock and capacity, so once both are done the order
/// is released and the node's stock and capacity are all back.
async fn concurrent_partial_releases(urls: Vec<String>, cluster: bool, ports: &[u16]) {
    use dom_router::store::conformance::empty_plan;
    use dom_router::store::{
        Allocation, HoldRequest, ReservationState, ReserveOutcome, StockUpdate, UpdateKind,
    };
    const T0: i64 = 1_800_000_000_000;
    const DAY: i64 = 20_000;
    const ROUNDS: usize = 40;
    let s = settings(urls, cluster);
    let store = Arc::new(RedisStore::new(&s, Vec::new()).unwrap());
    let update = StockUpdate {
        node_id: "n1".into(),
        sku: "A".into(),
        sequence: 1,
        kind: UpdateKind::Snapshot {
            on_hand: 1_000,
            safety_stock: None,
            reorder_point: dom_router::store::ReorderPoint::Keep,
        },
    };
    store.apply_updates(&[update], T0).await.unwrap();
    let line = |id: &str, units: u64| Allocation {
        line_id: id.into(),
        sku: "A".into(),
        node_id: "n1".into(),
        quantity: units,
        shipped: 0,
        released: 0,
        rejected: 0,
    };
    for round in 0..ROUNDS {
        let order = format!("both-{round}");
        let request = HoldRequest {
            order_id: order.clone(),
            fingerprint: order.clone(),
            segment: "standard".into(),
            use_safety_stock: false,
            plan: empty_plan(),
            allocations: vec![line("l1", 5), line("l2", 3)],
            expires_at: T0 + 600_000,
            capacity_day: DAY,
            capacity_limits: vec![("n1".into(), 1_000)],
            closed: Vec::new(),
            order: None,
            waiting: Vec::new(),
        };
        let outcome = store.reserve(request, T0).await.unwrap();
        assert!(matches!(outcome, ReserveOutcome::Created(_)), "{outcome:?}");
        store.commit(&order, T0).await.unwrap();
        let releases = ["l1", "l2"].map(|l| {
            let store = store.clone();
            let order = order.clone();
            tokio::spawn(async move { store.release(&order, &[l.to_owned()], T0).await })
        });
        for release in futures_util::future::join_all(releases).await {
            release.unwrap().unwrap();
        }
        let r = store.get_reservation(&order, T0).await.unwrap().unwrap();
        assert_eq!(r.state, ReservationState::Released, "round {round}");
        let used = store.capacity_used(DAY, T0).await.unwrap();
        assert_eq!(used.get("n1"), None, "round {round}: capacity left used");
        let stock = store.read_stock(&["A".into()], T0).await.unwrap();
        assert_eq!(stock["A"]["n1"].reserved, 0, "round {round}");
    }
    Audit::read(ports, &s.key_prefix).assert_consistent();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_releases_of_different_lines_on_a_single_redis() {
    let server = single();
    concurrent_partial_releases(vec![server.url()], false, &[server.port]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_releases_of_different_lines_on_a_cluster() {
    let c = cluster();
    concurrent_partial_releases(c.urls(), true, &c.ports()).await;
}

mod bad_data {
    //! Hashes and records in a form no script writes: scripts leave such a part alone rather
    //! than fail half-way, and what does fail says the data is bad (not that Redis is down),
    //! in a message short enough for a gRPC status.

    use std::sync::Arc;

    use dom_router::store::conformance::empty_plan;
    use dom_router::store::{
        Allocation, HoldRequest, RedisStore, ReservationState, ReserveOutcome, StockStore,
        StockUpdate, StoreError, UpdateKind,
    };

    use super::common::redis::command;

    const T0: i64 = 1_800_000_000_000;
    const DAY: i64 = 20_000;

    async fn store() -> (Arc<RedisStore>, String, u16) {
        let server = super::single();
        let s = super::settings(vec![server.url()], false);
        let store = Arc::new(RedisStore::new(&s, Vec::new()).unwrap());
        let updates: Vec<StockUpdate> = ["n1", "n2"]
            .iter()
            .map(|node| StockUpdate {
                node_id: (*node).into(),
                sku: "A".into(),
                sequence: 1,
                kind: UpdateKind::Snapshot {
                    on_hand: 100,
                    safety_stock: None,
                    reorder_point: dom_router::store::ReorderPoint::Keep,
                },
            })
            .collect();
        store.apply_updates(&updates, T0).await.unwrap();
        (store, s.key_prefix, server.port)
    }

    fn hold(order: &str, lines: &[(&str, &str, u64)], expires_at: i64) -> HoldRequest {
        HoldRequest {
            order_id: order.into(),
            fingerprint: order.into(),
            segment: "standard".into(),
            use_safety_stock: false,
            plan: empty_plan(),
            allocations: lines
                .iter()
                .map(|(line, node, units)| Allocation {
                    line_id: (*line).into(),
                    sku: "A".into(),
                    node_id: (*node).into(),
                    quantity: *units,
                    shipped: 0,
                    released: 0,
                    rejected: 0,
                })
                .collect(),
            expires_at,
            capacity_day: DAY,
            capacity_limits: Vec::new(),
            closed: Vec::new(),
            order: None,
            waiting: Vec::new(),
        }
    }

    async fn reserved(store: &RedisStore, order: &str, lines: &[(&str, &str, u64)]) {
        let outcome = store
            .reserve(hold(order, lines, T0 + 600_000), T0)
            .await
            .unwrap();
        assert!(matches!(outcome, ReserveOutcome::Created(_)), "{outcome:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_release_gives_capacity_back_past_a_counter_at_zero() {
        let (store, prefix, port) = store().await;
        reserved(&store, "o", &[("l1", "n1", 3), ("l2", "n2", 2)]).await;
        // the counter of n1 was set to 0 by something else: nothing of it to count down
        let used = format!("{prefix}:{{c:{DAY}}}:used");
        command(port, &["HSET", &used, "n1", "0"]).unwrap();
        let r = store.release("o", &[], T0).await.unwrap();
        assert_eq!(r.state, ReservationState::Released);
        assert!(store.capacity_used(DAY, T0).await.unwrap().is_empty());
        // given back once: a release again changes nothing
        store.release("o", &[], T0).await.unwrap();
        assert!(store.capacity_used(DAY, T0).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_hold_part_that_is_not_a_number_is_left_alone() {
        let (store, prefix, port) = store().await;
        reserved(&store, "keeps", &[("l1", "n1", 5)]).await;
        reserved(&store, "o", &[("l1", "n1", 3), ("l2", "n2", 2)]).await;
        let holds = format!("{prefix}:{{s:A}}:ho");
        let stored = command(port, &["HGET", &holds, "o"]).unwrap();
        let mut h: serde_json::Value = serde_json::from_str(&stored).unwrap();
        for part in h["a"].as_array_mut().unwrap() {
            if part[1] == "n2" {
                part[2] = "two".into();
            }
        }
        command(port, &["HSET", &holds, "o", &h.to_string()]).unwrap();
        for _ in 0..3 {
            // whatever a release makes of the bad part, n1's units come back once
            let _ = store.release("o", &[], T0).await;
        }
        let stock = store.read_stock(&["A".into()], T0).await.unwrap();
        assert_eq!(stock["A"]["n1"].reserved, 5, "n1 given back more than once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_script_failing_on_bad_data_is_corrupt_not_unavailable() {
        let (store, prefix, port) = store().await;
        let outcome = store
            .reserve(hold("o", &[("l1", "n1", 1)], T0 + 1_000), T0)
            .await
            .unwrap();
        assert!(matches!(outcome, ReserveOutcome::Created(_)), "{outcome:?}");
        let record = format!("{prefix}:{{o:o}}");
        command(port, &["HSET", &record, "al", "[{garbage"]).unwrap();
        // committing after the expiry expires the hold, which reads the allocations
        let e = store.commit("o", T0 + 2_000).await.unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(_)), "{e:?}");
        assert!(e.to_string().len() < 1_000, "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_long_unreadable_level_is_quoted_in_part() {
        let (store, prefix, port) = store().await;
        let levels = format!("{prefix}:{{s:A}}:lv");
        let garbage = "x".repeat(10_000);
        command(port, &["HSET", &levels, "n1", &garbage]).unwrap();
        let e = store.read_stock(&["A".into()], T0).await.unwrap_err();
        let why = e.to_string();
        assert!(matches!(&e, StoreError::Corrupt(_)), "{e:?}");
        assert!(why.len() < 400, "{} bytes: {why:.200}", why.len());
        assert!(why.contains("(10000 bytes)"), "{why}");
        let e = store
            .reserve(hold("o", &[("l1", "n1", 1)], T0 + 1_000), T0)
            .await
            .unwrap_err();
        assert!(e.to_string().len() < 400, "{} bytes", e.to_string().len());
        let r = store
            .apply_updates(
                &[StockUpdate {
                    node_id: "n1".into(),
                    sku: "A".into(),
                    sequence: 5,
                    kind: UpdateKind::Delta { change: 1 },
                }],
                T0,
            )
            .await
            .unwrap();
        let dom_router::store::UpdateResult::Rejected(why) = &r[0] else {
            panic!("{r:?}")
        };
        assert!(why.len() < 400, "{} bytes", why.len());
    }
}

mod round_trips {
    //! A plan read on a single Redis is one round trip, counted two ways: as the store counts
    //! its calls to Redis (one metrics sample each), and as Redis counts the times it found a
    //! client's socket readable.

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use dom_router::store::conformance::empty_plan;
    use dom_router::store::{
        Allocation, HoldRequest, RedisStore, ReserveOutcome, StockStore, StockUpdate, UpdateKind,
    };
    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    use super::common::redis::{Audit, RedisServer};

    /// A connection of its own for Redis's stats, kept open so that no connection opened or
    /// closed is counted among the reads it asks about.
    struct Stats(BufReader<TcpStream>);

    impl Stats {
        fn connect(port: u16) -> Self {
            let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Self(BufReader::new(stream))
        }

        /// Sends one command and reads its reply: a status line, or a bulk string.
        fn ask(&mut self, args: &[&str]) -> String {
            let mut request = format!("*{}\r\n", args.len());
            for arg in args {
                request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
            }
            self.0.get_mut().write_all(request.as_bytes()).unwrap();
            let mut line = String::new();
            self.0.read_line(&mut line).unwrap();
            let Some(len) = line.trim_end().strip_prefix('$') else {
                return line.trim_end().to_owned();
            };
            let mut body = vec![0; len.parse::<usize>().unwrap() + 2];
            self.0.read_exact(&mut body).unwrap();
            String::from_utf8(body).unwrap()
        }

        fn reset(&mut self) {
            assert_eq!(self.ask(&["CONFIG", "RESETSTAT"]), "+OK");
        }

        /// Times Redis found a client's socket readable since the stats were reset. Commands
        /// sent together (a pipeline) are read at once and count once; commands sent apart
        /// count once each, as do those a client's multiplexer happens to write apart.
        fn reads(&mut self) -> u64 {
            let info = self.ask(&["INFO", "stats"]);
            info.lines()
                .find_map(|l| l.strip_prefix("total_reads_processed:"))
                .and_then(|n| n.trim().parse().ok())
                .expect("INFO stats without total_reads_processed")
        }
    }

    /// Counts the store's calls to Redis: each records one sample of its round-trip time.
    #[derive(Default)]
    struct Calls(Arc<AtomicU64>);

    struct Tally(Arc<AtomicU64>);

    impl HistogramFn for Tally {
        fn record(&self, _seconds: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Recorder for Calls {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }

        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            if key.name() == "dom_router_redis_duration_seconds" {
                Histogram::from_arc(Arc::new(Tally(self.0.clone())))
            } else {
                Histogram::noop()
            }
        }
    }

    fn hold(order: &str, sku: &str, units: u64, expires_at: i64) -> HoldRequest {
        HoldRequest {
            order_id: order.into(),
            fingerprint: order.into(),
            segment: "standard".into(),
            use_safety_stock: false,
            plan: empty_plan(),
            allocations: vec![Allocation {
                line_id: "l1".into(),
                sku: sku.into(),
                node_id: "n1".into(),
                quantity: units,
                shipped: 0,
                released: 0,
                rejected: 0,
            }],
            expires_at,
            capacity_day: DAY,
            capacity_limits: Vec::new(),
            closed: Vec::new(),
            order: None,
            waiting: Vec::new(),
        }
    }

    const T0: i64 = 1_800_000_000_000;
    const DAY: i64 = 20_000;

    /// The engine plans from one `read_state`. Commands sent at once but apart are counted
    /// apart by the store, and on a runtime of several threads they are often written apart
    /// too, so twenty reads of three skus would count up to a hundred.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_plan_read_on_a_single_redis_is_one_round_trip() {
        const READS: u64 = 20;
        // a server of its own, so that no other test's reads are counted
        let server = RedisServer::start();
        let s = super::settings(vec![server.url()], false);
        let store = RedisStore::new(&s, Vec::new()).unwrap();
        let skus: Vec<String> = ["A", "B", "C"].iter().map(|s| (*s).to_owned()).collect();
        let updates: Vec<StockUpdate> = skus
            .iter()
            .map(|sku| StockUpdate {
                node_id: "n1".into(),
                sku: sku.clone(),
                sequence: 1,
                kind: UpdateKind::Snapshot {
                    on_hand: 10,
                    safety_stock: None,
                    reorder_point: dom_router::store::ReorderPoint::Keep,
                },
            })
            .collect();
        store.apply_updates(&updates, T0).await.unwrap();
        for (order, sku, units, expires_at) in [
            ("long", "B", 3, T0 + 600_000),
            ("short", "C", 4, T0 + 1_000),
        ] {
            let outcome = store
                .reserve(hold(order, sku, units, expires_at), T0)
                .await
                .unwrap();
            assert!(matches!(outcome, ReserveOutcome::Created(_)), "{outcome:?}");
        }
        let mut stats = Stats::connect(server.port);
        // what the reset and the question count by themselves
        stats.reset();
        let alone = stats.reads();
        stats.reset();
        // the reads run on this thread (none is spawned), so the recorder sees every call
        let calls = Calls::default();
        let recording = metrics::set_default_local_recorder(&calls);
        for _ in 0..READS {
            // nothing due yet: both holds count
            let (stock, used) = store.read_state(&skus, DAY, T0 + 1).await.unwrap();
            assert_eq!(stock["A"]["n1"].reserved, 0);
            assert_eq!(stock["B"]["n1"].reserved, 3);
            assert_eq!(stock["C"]["n1"].reserved, 4);
            assert_eq!(used["n1"], 7);
        }
        drop(recording);
        let calls = calls.0.load(Ordering::Relaxed);
        assert_eq!(
            calls, READS,
            "{READS} plan reads made {calls} calls to Redis"
        );
        let reads = stats.reads() - alone;
        assert_eq!(
            reads, READS,
            "{READS} plan reads were {reads} reads for Redis"
        );
        // the short hold is due: the read leaves its units and capacity out, writing nothing
        let (stock, used) = store.read_state(&skus, DAY, T0 + 1_000).await.unwrap();
        assert_eq!(stock["B"]["n1"].reserved, 3);
        assert_eq!(stock["C"]["n1"].reserved, 0);
        assert_eq!(stock["C"]["n1"].on_hand, 10);
        assert_eq!(used["n1"], 3);
        let audit = Audit::read(&[server.port], &s.key_prefix);
        assert_eq!(audit.levels[&("C".into(), "n1".into())].1, 4);
    }
}

/// Reroutes cut off half-way, as by a replica dying: the sweep undoes one cut off before it
/// was decided and finishes one cut off after, and either way stock, holds and records agree.
mod reroutes_cut_off {
    use dom_router::store::conformance::empty_plan;
    use dom_router::store::redis::RerouteCut;
    use dom_router::store::{
        Allocation, Decision, Fate, Gone, HoldRequest, RedisStore, RerouteHold, RerouteOutcome,
        RerouteReason, ReserveOutcome, StockStore, StockUpdate, StoreError, UnitFate, UpdateKind,
    };

    use super::common::redis::Audit;

    const T0: i64 = 1_800_000_000_000;

    async fn with_an_order(urls: Vec<String>, cluster: bool) -> (RedisStore, String) {
        let mut s = super::settings(urls, cluster);
        s.pending_timeout_ms = 1_000;
        let store = RedisStore::new(&s, Vec::new()).unwrap();
        let updates: Vec<StockUpdate> = ["n1", "n2"]
            .iter()
            .map(|node| StockUpdate {
                node_id: (*node).into(),
                sku: "A".into(),
                sequence: 1,
                kind: UpdateKind::Snapshot {
                    on_hand: 10,
                    safety_stock: None,
                    reorder_point: dom_router::store::ReorderPoint::Keep,
                },
            })
            .collect();
        store.apply_updates(&updates, T0).await.unwrap();
        let line = Allocation {
            line_id: "l1".into(),
            sku: "A".into(),
            node_id: "n1".into(),
            quantity: 3,
            shipped: 0,
            released: 0,
            rejected: 0,
        };
        let request = HoldRequest {
            order_id: "o".into(),
            fingerprint: "o".into(),
            segment: "standard".into(),
            use_safety_stock: false,
            plan: empty_plan(),
            allocations: vec![line],
            expires_at: T0 + 600_000,
            capacity_day: 20_000,
            capacity_limits: Vec::new(),
            closed: Vec::new(),
            order: None,
            waiting: Vec::new(),
        };
        let outcome = store.reserve(request, T0).await.unwrap();
        assert!(matches!(outcome, ReserveOutcome::Created(_)), "{outcome:?}");
        (store, s.key_prefix)
    }

    fn reroute(id: &str) -> RerouteHold {
        RerouteHold {
            order_id: "o".into(),
            node_id: "n1".into(),
            removes_stock: true,
            gone: vec![Gone {
                line_id: "l1".into(),
                sku: "A".into(),
                units: 2,
            }],
            new: vec![Allocation {
                line_id: "l1".into(),
                sku: "A".into(),
                node_id: "n2".into(),
                quantity: 2,
                shipped: 0,
                released: 0,
                rejected: 0,
            }],
            waiting: Vec::new(),
            from_waiting: Vec::new(),
            use_safety_stock: false,
            closed: Vec::new(),
            decision: Decision {
                kind: dom_router::store::DecisionKind::Reroute,
                at: T0,
                reroute_id: id.into(),
                digest: id.into(),
                node_id: "n1".into(),
                reason: RerouteReason::ShortPick,
                rules_version: "v".into(),
                strategy: dom_router::domain::StrategyKind::Nearest,
                fates: vec![UnitFate {
                    line_id: "l1".into(),
                    sku: "A".into(),
                    units: 2,
                    fate: Fate::Rerouted {
                        node_id: "n2".into(),
                    },
                }],
                plan: empty_plan(),
                waited_ms: 0,
            },
            cancelled: 0,
        }
    }

    /// (on hand, reserved) at n1 and n2.
    async fn levels(store: &RedisStore, now: i64) -> [(u64, u64); 2] {
        let view = store.read_stock(&["A".into()], now).await.unwrap();
        ["n1", "n2"].map(|n| {
            let l = view["A"][n];
            (l.on_hand, l.reserved)
        })
    }

    async fn cut_off(urls: Vec<String>, cluster: bool, ports: &[u16]) {
        // cut off before it was decided: undone once its deadline passes
        let (store, prefix) = with_an_order(urls.clone(), cluster).await;
        let cut = store
            .reroute_cut_off(reroute("r1"), T0, RerouteCut::AfterHolds)
            .await
            .unwrap();
        assert_eq!(cut, None);
        // meanwhile the order reads as before, its new units are held, and a release waits
        let r = store.get_reservation("o", T0).await.unwrap().unwrap();
        assert!(r.history.is_empty());
        assert_eq!(levels(&store, T0).await, [(10, 3), (10, 2)]);
        let e = store.release("o", &[], T0).await.unwrap_err();
        assert!(matches!(e, StoreError::InFlight(_)), "{e:?}");
        assert_eq!(
            store.reroute(reroute("r2"), T0).await.unwrap(),
            RerouteOutcome::Busy
        );
        // so does a shipment of the order, and nothing of it is applied
        let ship = StockUpdate {
            node_id: "n1".into(),
            sku: "A".into(),
            sequence: 2,
            kind: UpdateKind::Shipment {
                order_id: "o".into(),
                quantity: 1,
            },
        };
        let e = store
            .apply_updates(std::slice::from_ref(&ship), T0)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::InFlight(_)), "{e:?}");
        assert_eq!(levels(&store, T0).await, [(10, 3), (10, 2)]);
        let later = T0 + 1_001;
        store.expire_holds(later).await.unwrap();
        assert_eq!(levels(&store, later).await, [(10, 3), (10, 0)]);
        let r = store.get_reservation("o", later).await.unwrap().unwrap();
        assert!(r.history.is_empty());
        assert_eq!(r.allocations[0].quantity, 3);
        Audit::read(ports, &prefix).assert_consistent();
        // and the order can be rerouted again
        let done = store.reroute(reroute("r3"), later).await.unwrap();
        assert!(matches!(done, RerouteOutcome::Done(_)), "{done:?}");
        assert_eq!(levels(&store, later).await, [(8, 1), (10, 2)]);
        Audit::read(ports, &prefix).assert_consistent();

        // cut off once decided: finished by the next read past its deadline
        let (store, prefix) = with_an_order(urls, cluster).await;
        let cut = store
            .reroute_cut_off(reroute("r1"), T0, RerouteCut::AfterDecision)
            .await
            .unwrap();
        assert_eq!(cut, None);
        let later = T0 + 1_001;
        let r = store.get_reservation("o", later).await.unwrap().unwrap();
        assert_eq!(
            r.history
                .iter()
                .map(|d| d.reroute_id.as_str())
                .collect::<Vec<_>>(),
            vec!["r1"]
        );
        // the short-picked units left on hand once, the new ones are held once
        assert_eq!(levels(&store, later).await, [(8, 1), (10, 2)]);
        store.expire_holds(later).await.unwrap();
        assert_eq!(levels(&store, later).await, [(8, 1), (10, 2)]);
        Audit::read(ports, &prefix).assert_consistent();
        // the same reroute again changes nothing
        let again = store.reroute(reroute("r1"), later).await.unwrap();
        assert!(matches!(again, RerouteOutcome::Repeat(_)), "{again:?}");
        assert_eq!(levels(&store, later).await, [(8, 1), (10, 2)]);
        // and a release then gives back everything held
        store.release("o", &[], later).await.unwrap();
        assert_eq!(levels(&store, later).await, [(8, 0), (10, 0)]);
        Audit::read(ports, &prefix).assert_consistent();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_a_single_redis() {
        let server = super::single();
        cut_off(vec![server.url()], false, &[server.port]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_a_cluster() {
        let cluster = super::cluster();
        cut_off(cluster.urls(), true, &cluster.ports()).await;
    }
}
