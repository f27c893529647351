//! The production store: stock, holds and reservations in Redis or Redis Cluster, shared by
//! every replica of the service.
//!
//! Every key is hash-tagged so that what must change together sits in one cluster slot, and
//! every change to one slot is one Lua script (loaded once, called by its SHA1):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:{s:SKU}:lv` | hash | levels: `NODE` → "on hand,reserved,safety stock,last feed sequence,pending[,reorder point]" |
//! | `P:{s:SKU}:ho` | hash | holds: `ORDER` → the attempt token and the line, node and units it holds of this sku |
//! | `P:{s:SKU}:in` | hash | expected receipts: `NODE\nREFERENCE` → "YYYY-MM-DD,units" |
//! | `P:{s:SKU}:void:TOKEN` | string | an aborted attempt, so that a late hold of it is refused |
//! | `P:{o:ORDER}` | hash | the reservation record: state, token, expiry, deadline, day, body, allocations |
//! | `P:{x}:expiry` | sorted set | `TOKEN:ORDER` by the time the attempt or hold must be looked at |
//! | `P:{x}:claim:DUE:TOKEN:ORDER` | string | a sweeper's short claim on one due entry |
//! | `P:{c:DAY}:used` / `:orders` | hash | node capacity used on a day, and by which order (per line and node) |
//! | `P:{m:N}:marker` | string | one per part of the slot space, to tell when Redis lost its data |
//! | `P:{b}:w:SKU` / `P:{b}:ws:SKU` / `P:{b}:skus` | hash / hash / set | the index of lines waiting for supply of a sku, their units by segment, and the skus that have some (see `waiting`) |
//! | `P:{la}:d:MINUTE` / `:first` / `:prices` / `:pv` | hash / string / string / string | look-ahead: demand counted per minute, when counting began, the newest price table and its version (see `lookahead`) |
//!
//! On a single Redis a reserve is one script over all its keys (and a read is one pipeline,
//! one round trip). On a cluster a reserve spans slots
//! (the order's record, each sku, the day's capacity), so it is made safe in steps: (1) the record is written *pending* with the whole plan and a deadline, and
//! indexed in the expiry set; (2) each sku and the capacity are held, each atomically and
//! idempotently under the attempt's token; (3) the record becomes *held*. If a step fails, the
//! replica gives back what it held. If the replica dies, any replica's sweep finds the attempt
//! by its deadline, marks it aborted (so the late replica cannot finish it), writes void
//! markers (so it cannot hold more) and gives back what the record says it may hold. Giving
//! back is idempotent per sku, so an expired hold is returned exactly once however many
//! replicas sweep. A release likewise adds its lines to those the record notes as being given
//! back, so that a retry or a sweep finishes every release cut off half-way, however many were
//! begun at once. The day's capacity is kept per line and node, and a release gives back that
//! of the lines it names, each line once (keeping its shipped units): whichever call finishes
//! a release gives its capacity back, and releases of different lines at once never take back
//! each other's.
//!
//! A sweeper claims each due entry for a few operation timeouts before it settles it, so that
//! replicas sweeping at once share the work out. Reads never sweep: alongside the levels they
//! read what is due and leave out the units a sweep will give back, writing nothing. They look
//! only at due orders that hold what they read, and wait for those orders' records only a
//! short while: a record behind a stalled master leaves its units counted as reserved. A reserve
//! refused for want of units or capacity sweeps what is due and tries once more, since a read
//! may have counted on units a sweep has yet to return.
//!
//! Every stock figure is at most [`MAX_STOCK_UNITS`], so the scripts' numbers (doubles) are
//! exact and are written back with `%.0f`. A level in a form no script writes is reported, never
//! computed with: reads fail as corrupt naming it, deltas, shipments and holds there are
//! refused, and a snapshot repairs it, recounting reserved units from the sku's holds.
//!
//! The store is one type, [`RedisStore`], whose methods sit by concern: `keys` (the layout
//! above), `scripts` and `connection` (talking to Redis), `record`, `level` and `capacity`
//! (what is stored, and how it reads back), `feed`, `read`, `reserve` (and `cluster`, a reserve
//! in steps), `release` (and commit), `reroute` (and fills), `waiting` (the index of lines
//! waiting for supply) and `sweep` (the expiry set).
//!
//! [`MAX_STOCK_UNITS`]: crate::store::MAX_STOCK_UNITS

mod capacity;
mod cluster;
mod connection;
mod events;
mod feed;
mod keys;
mod lease;
mod level;
mod lookahead;
mod read;
mod record;
mod release;
mod reroute;
#[cfg(feature = "testkit")]
pub use reroute::RerouteCut;
mod reserve;
mod scripts;
mod sweep;
mod waiting;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::RwLock;
use redis::IntoConnectionInfo;
use tokio::sync::Mutex as AsyncMutex;

use super::{
    HoldRequest, Reservation, ReserveOutcome, StockStore, StockUpdate, StockView, StoreError,
    UpdateResult, WaitingEntry,
};
use crate::clock::Millis;
use crate::config::{RedisSettings, StockSeed, redact_url};
use crate::events::{DEFAULT_WATCHER_BUFFER, Event, EventId, Page, Retention};
use connection::Conn;
use keys::Keys;
pub use keys::slot;
use scripts::Scripts;

/// Stock in Redis or Redis Cluster; see the module docs.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RedisSettings,
    keys: Keys,
    scripts: Scripts,
    seed: Vec<StockSeed>,
    conn: RwLock<Option<Conn>>,
    connecting: AsyncMutex<Option<(Instant, String)>>,
    /// The markers were seen in Redis by this process.
    markers_seen: AtomicBool,
    data_losses: AtomicU64,
    event_retention: Retention,
    events: events::EventState,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl RedisStore {
    /// A store for these settings, with `seed` as the starting stock of levels Redis does not
    /// have. Connects lazily: Redis need not be up yet.
    pub fn new(settings: &RedisSettings, seed: Vec<StockSeed>) -> Result<Self, StoreError> {
        for url in &settings.urls {
            url.as_str().into_connection_info().map_err(|e| {
                StoreError::Unavailable(format!("store.redis.urls: {}: {e}", redact_url(url)))
            })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                keys: Keys::new(&settings.key_prefix),
                scripts: Scripts::new(Retention::default().max_events),
                seed,
                conn: RwLock::new(None),
                connecting: AsyncMutex::new(None),
                markers_seen: AtomicBool::new(false),
                data_losses: AtomicU64::new(0),
                event_retention: Retention::default(),
                events: events::EventState {
                    live_capacity: DEFAULT_WATCHER_BUFFER,
                    ..Default::default()
                },
            }),
        })
    }

    /// The same store, its event stream keeping what `retention` says and letting a watcher
    /// fall `watcher_buffer` events behind the live feed. Called before the store is shared.
    pub fn with_events(mut self, retention: Retention, watcher_buffer: usize) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.scripts = Scripts::new(retention.max_events);
            inner.event_retention = retention;
            inner.events.live_capacity = watcher_buffer;
        }
        self
    }

    /// How often this process found that Redis had lost its data while it was running.
    pub fn data_losses(&self) -> u64 {
        self.inner.data_losses.load(Ordering::Relaxed)
    }

    fn op_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.settings.op_timeout_ms)
    }

    fn retention_ms(&self) -> u64 {
        self.inner.settings.retention_secs.saturating_mul(1000)
    }
}

#[async_trait]
impl StockStore for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        self.ping_on(&conn).await
    }

    async fn read_stock(&self, skus: &[String], now: Millis) -> Result<StockView, StoreError> {
        let conn = self.conn().await?;
        Ok(self.read_at(&conn, skus, None, now).await?.0)
    }

    async fn apply_updates(
        &self,
        updates: &[StockUpdate],
        now: Millis,
    ) -> Result<Vec<UpdateResult>, StoreError> {
        let conn = self.conn().await?;
        self.apply_updates_on(&conn, updates, now).await
    }

    async fn reserve(
        &self,
        request: HoldRequest,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        let conn = self.conn().await?;
        self.reserve_on(&conn, request, now).await
    }

    async fn capacity_used(
        &self,
        day: i64,
        now: Millis,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let conn = self.conn().await?;
        Ok(self.read_at(&conn, &[], Some(day), now).await?.1)
    }

    async fn read_state(
        &self,
        skus: &[String],
        day: i64,
        now: Millis,
    ) -> Result<(StockView, HashMap<String, u64>), StoreError> {
        let conn = self.conn().await?;
        self.read_at(&conn, skus, Some(day), now).await
    }

    async fn read_events(&self, after: Option<EventId>, limit: usize) -> Result<Page, StoreError> {
        self.read_events_on(after, limit).await
    }

    async fn subscribe_events(
        &self,
    ) -> Result<tokio::sync::broadcast::Receiver<Arc<Event>>, StoreError> {
        self.subscribe_on().await
    }

    async fn trim_events(&self, now: Millis) -> Result<u64, StoreError> {
        self.trim_events_on(now).await
    }

    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: u64,
        _now: Millis,
    ) -> Result<bool, StoreError> {
        self.take_lease_on(name, holder, ttl_ms).await
    }

    async fn cursor(&self, name: &str) -> Result<Option<EventId>, StoreError> {
        self.cursor_on(name).await
    }

    async fn record_demand(
        &self,
        seen: &crate::lookahead::Observed,
        now: Millis,
        window_ms: Millis,
    ) -> Result<(), StoreError> {
        self.record_demand_on(seen, now, window_ms).await
    }

    async fn read_demand(
        &self,
        now: Millis,
        window_ms: Millis,
    ) -> Result<crate::lookahead::Demand, StoreError> {
        self.read_demand_on(now, window_ms).await
    }

    async fn save_prices(&self, prices: &crate::lookahead::Prices) -> Result<u64, StoreError> {
        self.save_prices_on(prices).await
    }

    async fn read_prices(
        &self,
        known: u64,
    ) -> Result<Option<crate::lookahead::Prices>, StoreError> {
        self.read_prices_on(known).await
    }

    async fn save_cursor(
        &self,
        name: &str,
        holder: &str,
        cursor: EventId,
        _now: Millis,
    ) -> Result<bool, StoreError> {
        self.save_cursor_on(name, holder, cursor).await
    }

    async fn read_stored_levels(
        &self,
        skus: &[String],
        _now: Millis,
    ) -> Result<crate::store::StockView, StoreError> {
        let conn = self.conn().await?;
        self.read_levels(&conn, skus).await
    }

    async fn record_alerts(
        &self,
        sku: &str,
        seen: &HashMap<String, crate::store::StockLevel>,
        checks: &[crate::events::alerts::AlertCheck],
        _now: Millis,
    ) -> Result<Option<crate::store::AlertTurns>, StoreError> {
        self.record_alerts_on(sku, seen, checks).await
    }

    async fn reroute(
        &self,
        hold: crate::store::RerouteHold,
        now: Millis,
    ) -> Result<crate::store::RerouteOutcome, StoreError> {
        let conn = self.conn().await?;
        self.reroute_on(&conn, hold, now).await
    }

    async fn commit(&self, order_id: &str, now: Millis) -> Result<Reservation, StoreError> {
        let conn = self.conn().await?;
        self.commit_on(&conn, order_id, now).await
    }

    async fn release(
        &self,
        order_id: &str,
        line_ids: &[String],
        now: Millis,
    ) -> Result<Reservation, StoreError> {
        let conn = self.conn().await?;
        self.release_on(&conn, order_id, line_ids, now).await
    }

    async fn get_reservation(
        &self,
        order_id: &str,
        now: Millis,
    ) -> Result<Option<Reservation>, StoreError> {
        let conn = self.conn().await?;
        match self.current_record(&conn, order_id, now).await? {
            Some(record) if !record.unfinished() => Ok(Some(record.reservation()?)),
            _ => Ok(None),
        }
    }

    /// Entries of the expiry set: held and in-flight reservations, and committed ones until
    /// their hold time passes (the sweep then drops them). Counting only holds would mean
    /// reading every record; this is one ZCARD.
    async fn read_inbound(&self, skus: &[String]) -> Result<super::InboundView, StoreError> {
        let conn = self.conn().await?;
        self.read_inbound_on(&conn, skus).await
    }

    async fn note_waiting(&self, entries: &[WaitingEntry]) -> Result<(), StoreError> {
        self.note_waiting_on(entries).await
    }

    async fn waiting_for(&self, skus: &[String]) -> Result<Vec<WaitingEntry>, StoreError> {
        self.waiting_for_on(skus).await
    }

    async fn waiting_units(
        &self,
        skus: &[String],
    ) -> Result<HashMap<String, std::collections::BTreeMap<String, u64>>, StoreError> {
        self.waiting_units_on(skus).await
    }

    async fn forget_waiting(&self, entries: &[WaitingEntry]) -> Result<(), StoreError> {
        self.forget_waiting_on(entries).await
    }

    async fn active_holds(&self, _now: Millis) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        self.query(&conn, redis::cmd("ZCARD").arg(self.inner.keys.expiry()))
            .await
    }

    /// One sweeper per due entry: each entry is claimed (for a few operation timeouts) before
    /// it is settled, so replicas and requests sweeping at once share the work out instead of
    /// all doing it; one left unsettled is taken over once its claim lapses.
    async fn expire_holds(&self, now: Millis) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        Ok(self.sweep(&conn, now).await?.expired)
    }
}
