//! Talking to Redis: the connection to one Redis or a cluster, made lazily and remade after a
//! failure; every call bounded by the operation timeout and measured; scripts called by their
//! SHA1; and the markers that tell when Redis lost its data, with the starting stock seeded
//! where it has none.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};
use tracing::{error, info, warn};

use super::RedisStore;
use super::keys::slot;
use super::record::int;
use super::scripts::Named;
use crate::store::StoreError;

/// How soon a failed connection is tried again; calls in between fail at once.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// A connection to a single Redis or to a cluster; both multiplex and are cheap to clone.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Whether a script call failed in the script: a Lua runtime error, or an error reply of a
/// command it ran (`ERR ...`, `WRONGTYPE ...`). Not a missing script, a script or server that
/// is busy, loading or out of memory, a cluster redirection, a timeout or a broken connection:
/// those pass, and are unavailable.
fn script_failed(e: &redis::RedisError) -> bool {
    match e.kind() {
        redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => true,
        redis::ErrorKind::Extension => e.code() == Some("WRONGTYPE"),
        _ => false,
    }
}

/// A call to Redis that failed: Redis is taken to be unavailable.
pub(super) fn failed(what: &str, e: &redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("Redis {what}: {e}"))
}

/// Characters of a script's error a message quotes at most: enough for Redis's reason and the
/// line of the script.
const SCRIPT_ERROR_CHARS: usize = 200;

impl RedisStore {
    async fn connect(&self) -> Result<Conn, String> {
        let s = &self.inner.settings;
        let connect_timeout = Duration::from_millis(s.connect_timeout_ms);
        if s.cluster {
            let mut builder = ClusterClientBuilder::new(s.urls.clone())
                .tcp_settings(TcpSettings::default().set_nodelay(true))
                .connection_timeout(connect_timeout)
                .response_timeout(self.op_timeout())
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(100);
            if let Some(password) = &s.password {
                builder = builder.password(password.clone());
            }
            let client = builder.build().map_err(|e| e.to_string())?;
            let conn = client
                .get_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            Ok(Conn::Cluster(conn))
        } else {
            let mut info = s
                .urls
                .first()
                .ok_or("store.redis.urls is empty")?
                .as_str()
                .into_connection_info()
                .map_err(|e| e.to_string())?;
            if let Some(password) = &s.password {
                let redis = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(redis);
            }
            // small requests and replies: without this, one can wait for a delayed ACK
            info = info.set_tcp_settings(TcpSettings::default().set_nodelay(true));
            let client = redis::Client::open(info).map_err(|e| e.to_string())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout))
                .set_response_timeout(Some(self.op_timeout()))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(100));
            let manager = ConnectionManager::new_with_config(client, config)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Conn::Single(manager))
        }
    }

    /// The connection, made on first use; while Redis cannot be reached, calls fail at once.
    pub(super) async fn conn(&self) -> Result<Conn, StoreError> {
        if let Some(conn) = self.inner.conn.read().clone() {
            return Ok(conn);
        }
        let mut last_failure = self.inner.connecting.lock().await;
        if let Some(conn) = self.inner.conn.read().clone() {
            return Ok(conn);
        }
        if let Some((at, why)) = last_failure.as_ref()
            && at.elapsed() < RECONNECT_PAUSE
        {
            return Err(StoreError::Unavailable(format!(
                "cannot reach Redis: {why}"
            )));
        }
        let connect_timeout = Duration::from_millis(self.inner.settings.connect_timeout_ms);
        let result = match tokio::time::timeout(connect_timeout * 2, self.connect()).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer within {} ms",
                connect_timeout.as_millis() * 2
            )),
        };
        match result {
            Ok(conn) => {
                *last_failure = None;
                *self.inner.conn.write() = Some(conn.clone());
                Ok(conn)
            }
            Err(why) => {
                *last_failure = Some((Instant::now(), why.clone()));
                Err(StoreError::Unavailable(format!(
                    "cannot reach Redis: {why}"
                )))
            }
        }
    }

    /// Runs a call to Redis within the operation timeout, mapping its failure.
    pub(super) async fn timed<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.timed_as(what, false, call).await
    }

    /// As [`timed`](Self::timed); for a script call (`script`), an error the script itself
    /// raised or met (see [`script_failed`]) means the data it read is not what the scripts
    /// write: that is corrupt, not unavailable, so a client does not retry it forever.
    async fn timed_as<T>(
        &self,
        what: &'static str,
        script: bool,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        use crate::metrics::RoundTrip;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.op_timeout(), call).await;
        let outcome = match &result {
            Ok(Ok(_)) => RoundTrip::Ok,
            Ok(Err(_)) => RoundTrip::Error,
            Err(_) => RoundTrip::Timeout,
        };
        crate::metrics::redis(what, outcome, started.elapsed());
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if script && script_failed(&e) => Err(StoreError::Corrupt(format!(
                "the {what} script failed on data it cannot use: {}",
                crate::store::quoted(&e.to_string(), SCRIPT_ERROR_CHARS)
            ))),
            Ok(Err(e)) => Err(failed(what, &e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis {what}: no answer within {} ms",
                self.inner.settings.op_timeout_ms
            ))),
        }
    }

    pub(super) async fn eval(
        &self,
        conn: &Conn,
        script: &Named,
        keys: &[&str],
        args: &[String],
    ) -> Result<Value, StoreError> {
        // By its SHA1, and on a node that lacks it (new, restarted, failed over) by its source,
        // which caches it there. Not `SCRIPT LOAD`: on a cluster that goes to every master, so
        // one stalled master would hold up scripts whose keys are all elsewhere.
        let mut by_hash = redis::cmd("EVALSHA");
        let mut by_source = redis::cmd("EVAL");
        by_hash.arg(script.script.get_hash());
        by_source.arg(&script.code);
        // a script that reports its changes appends them to the log of its slot, its last key
        let log = match (script.emits, keys.first()) {
            (true, Some(first)) => Some(self.log_key(first)),
            _ => None,
        };
        for cmd in [&mut by_hash, &mut by_source] {
            cmd.arg(keys.len() + usize::from(log.is_some()))
                .arg(keys)
                .arg(log.as_deref())
                .arg(args);
        }
        let written = match (&log, self.inner.settings.cluster) {
            (Some(log), true) => Some(slot(log)),
            _ => None,
        };
        let mut conn = conn.clone();
        let reply = self
            .timed_as(script.name, true, async move {
                match by_hash.query_async::<Value>(&mut conn).await {
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        by_source.query_async::<Value>(&mut conn).await
                    }
                    other => other,
                }
            })
            .await;
        if let (Ok(_), Some(slot)) = (&reply, written) {
            self.outbox_written(slot);
        }
        reply
    }

    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        conn: &Conn,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = conn.clone();
        self.timed("command", cmd.query_async::<T>(&mut conn)).await
    }

    /// Which script calls may share a batch: all of them on a single Redis, one slot's on a
    /// cluster.
    pub(super) fn group(&self, key: &str) -> u16 {
        if self.inner.settings.cluster {
            slot(key)
        } else {
            0
        }
    }

    /// Whether Redis answers, and still holds its data (see [`check_markers`](Self::check_markers)).
    pub(super) async fn ping_on(&self, conn: &Conn) -> Result<(), StoreError> {
        let pong: String = self.query(conn, &redis::cmd("PING")).await?;
        if pong != "PONG" {
            return Err(StoreError::Unavailable(format!(
                "Redis answered PING with {pong:?}"
            )));
        }
        self.check_markers(conn).await
    }

    /// Checks the data markers (and writes them where missing), so that a Redis that lost its
    /// data while this process ran is noticed; seeds starting stock into a Redis without any.
    async fn check_markers(&self, conn: &Conn) -> Result<(), StoreError> {
        let keys = &self.inner.keys.markers;
        let calls = keys.iter().map(|key| async move {
            let mut set = redis::cmd("SET");
            set.arg(key).arg("1").arg("NX");
            self.query::<Option<String>>(conn, &set).await
        });
        let created = try_join_all(calls).await?;
        let missing = created.iter().filter(|c| c.is_some()).count();
        let seen = self.inner.markers_seen.swap(true, Ordering::Relaxed);
        if missing > 0 {
            if seen {
                self.inner.data_losses.fetch_add(1, Ordering::Relaxed);
                error!(
                    missing,
                    of = keys.len(),
                    "Redis has lost its data (restarted without persistence?): reservations and stock levels are gone; re-push a stock snapshot from every feed"
                );
            } else if missing == keys.len() {
                info!("Redis holds no stock data yet; starting empty");
            } else {
                warn!(
                    missing,
                    of = keys.len(),
                    "part of Redis holds no stock data (a shard restarted without persistence?); re-push a stock snapshot from every feed"
                );
            }
            if !self.inner.seed.is_empty() {
                let seeded = self.seed(conn).await?;
                info!(seeded, "starting stock written where Redis had none");
            }
        }
        Ok(())
    }

    async fn seed(&self, conn: &Conn) -> Result<u64, StoreError> {
        let keys = &self.inner.keys;
        let mut groups: BTreeMap<u16, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for row in &self.inner.seed {
            let key = keys.levels(&row.sku);
            let (group_keys, args) = groups.entry(self.group(&key)).or_default();
            let index = match group_keys.iter().position(|k| *k == key) {
                Some(i) => i,
                None => {
                    group_keys.push(key);
                    group_keys.len() - 1
                }
            };
            args.extend([
                (index + 1).to_string(),
                row.node.clone(),
                row.on_hand.to_string(),
                row.safety_stock.to_string(),
            ]);
        }
        let calls = groups.values().map(|(group_keys, args)| {
            let refs: Vec<&str> = group_keys.iter().map(String::as_str).collect();
            async move { self.eval(conn, &self.inner.scripts.seed, &refs, args).await }
        });
        let seeded = try_join_all(calls).await?;
        Ok(seeded.iter().filter_map(int).fold(0, i64::saturating_add) as u64)
    }
}
