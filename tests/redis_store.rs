//! The store suite of the in-memory store, unchanged, against a real Redis and a real Redis
//! Cluster of three masters; and what only a shared store can get wrong: attempts abandoned by
//! a replica that died, and a Redis that lost its data.

#[path = "common/redis.rs"]
mod redis_harness;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use dom_router::config::{Config, ConfigSource, RedisSettings};
use dom_router::store::{RedisStore, StockStore};
use redis_harness::{RedisCluster, RedisServer};

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
