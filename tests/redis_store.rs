//! The store suite of the in-memory store, unchanged, against a real Redis and a real Redis
//! Cluster of three masters; and what only a shared store can get wrong: attempts abandoned by
//! a replica that died, and a Redis that lost its data.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use common::redis::{RedisCluster, RedisServer};
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
