//! The event log on Redis: one stream, `P:{e}:events`, that every replica reads.
//!
//! The scripts that change a reservation or a level append the event themselves (see the end
//! of `lua/prelude.lua`), so the change and its event are one atomic step. On a single Redis
//! they append to the stream directly and the event's key is its stream id. On a cluster the
//! stream is in another slot than the sku or the order, so each script appends to the outbox
//! of its own slot, `P:{ob:N}:ob` (a tag chosen per slot to hash into it), and a mover takes
//! the outbox's entries to the stream in order and trims them. The replica that wrote moves
//! at once; every replica looks over every outbox every few seconds, so entries left by a
//! replica that died are moved all the same. One mover per outbox at a time (a short lock in
//! the outbox's slot); a mover that dies after appending but before trimming leaves entries
//! that the next one appends again, under the same key (`SLOT-OUTBOX_ID`): at least once.
//!
//! Watchers follow the stream through one reader per replica, which polls it (every 5 ms
//! after an event, backing off to 20 ms when idle) and hands each entry to every subscriber.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use redis::Value;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, warn};

use super::RedisStore;
use super::keys::{Keys, attempt_token, slot};
use super::level::parse_level;
use crate::clock::Millis;
use crate::events::alerts::AlertCheck;
use crate::events::{
    AlertChange, Change, Event, EventId, EventKind, Page, ReservationChange, StockChange,
    check_cursor,
};
use crate::store::{AlertTurns, Allocation, ReservationState, StockLevel, StoreError};

/// Entries a reader or a mover takes in one step.
const BATCH: usize = 256;
/// How often every outbox is looked over for entries no mover took (a replica died).
const OUTBOX_SCAN: Duration = Duration::from_secs(5);
/// Slots in a Redis Cluster.
const SLOTS: u16 = 16384;

/// For each cluster slot, a hash tag that hashes into it.
fn slot_tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); usize::from(SLOTS)];
        let mut found = 0;
        for n in 0u32.. {
            let tag = format!("ob:{n}");
            let s = usize::from(slot(&format!("{{{tag}}}")));
            if tags[s].is_empty() {
                tags[s] = tag;
                found += 1;
                if found == tags.len() {
                    break;
                }
            }
        }
        tags
    })
}

impl Keys {
    pub(super) fn events(&self) -> String {
        format!("{}:{{e}}:events", self.prefix)
    }

    /// The outbox of a cluster slot.
    pub(super) fn outbox(&self, slot: u16) -> String {
        format!("{}:{{{}}}:ob", self.prefix, slot_tags()[usize::from(slot)])
    }

    /// The alert states of a sku (see `events::alerts`), in its slot.
    pub(super) fn alerts(&self, sku: &str) -> String {
        format!("{}:{{s:{sku}}}:al", self.prefix)
    }

    fn mover_lock(&self, slot: u16) -> String {
        format!("{}:{{{}}}:mv", self.prefix, slot_tags()[usize::from(slot)])
    }
}

/// What the store keeps for its log: the live feed of this replica's reader, and the mover's
/// queue of outboxes written.
#[derive(Default)]
pub(super) struct EventState {
    pub(super) live_capacity: usize,
    pub(super) live: parking_lot::Mutex<Option<broadcast::Sender<Arc<Event>>>>,
    pub(super) mover: OnceLock<mpsc::UnboundedSender<u16>>,
    pub(super) last_scan: parking_lot::Mutex<Option<std::time::Instant>>,
    /// A look over the outboxes is under way.
    pub(super) scanning: std::sync::atomic::AtomicBool,
}

/// A stream entry: id and fields.
type Entry = (String, Vec<(String, String)>);

fn entries(value: Value) -> Result<Vec<Entry>, StoreError> {
    redis::from_redis_value::<Vec<(String, Vec<(String, String)>)>>(value)
        .map_err(|e| StoreError::Corrupt(format!("an event stream entry: {e}")))
}

/// The event of a stream entry, or why it is not one (written by something else).
fn event(id: &str, fields: Vec<(String, String)>) -> Result<Event, String> {
    let id: EventId = id.parse()?;
    let f: HashMap<String, String> = fields.into_iter().collect();
    let get = |name: &str| f.get(name).map(String::as_str).unwrap_or("");
    let kind = EventKind::parse(get("k")).ok_or_else(|| format!("kind {:?}", get("k")))?;
    // written in the stream, the entry's own time; moved from an outbox, the outbox entry's
    let at: Millis = match f.get("at") {
        Some(at) => at.parse().map_err(|_| format!("time {at:?}"))?,
        None => i64::try_from(id.ms).unwrap_or(i64::MAX),
    };
    let figure = |name: &str| -> Result<u64, String> {
        get(name)
            .parse()
            .map_err(|_| format!("{name} {:?}", get(name)))
    };
    let change = if kind.is_alert() {
        Change::Alert(AlertChange {
            sku: get("s").to_owned(),
            node_id: get("n").to_owned(),
            segment: get("sg").to_owned(),
            ats: figure("ats")?,
            threshold: match get("th") {
                "" => None,
                _ => Some(figure("th")?),
            },
        })
    } else if kind == EventKind::StockChanged {
        let level = parse_level(get("lv")).ok_or_else(|| format!("level {:?}", get("lv")))?;
        Change::Stock(StockChange {
            sku: get("s").to_owned(),
            node_id: get("n").to_owned(),
            level,
        })
    } else {
        let allocations: Vec<Allocation> = match get("al") {
            "" | "{}" | "[]" => Vec::new(),
            al => serde_json::from_str(al).map_err(|e| format!("allocations: {e}"))?,
        };
        let lines: Vec<String> = match get("ln") {
            "" | "{}" | "[]" => Vec::new(),
            ln => serde_json::from_str(ln).map_err(|e| format!("lines: {e}"))?,
        };
        Change::Reservation(ReservationChange {
            order_id: get("o").to_owned(),
            segment: get("sg").to_owned(),
            state: ReservationState::parse(get("st"))
                .ok_or_else(|| format!("state {:?}", get("st")))?,
            allocations,
            lines,
        })
    };
    let key = match f.get("ky") {
        Some(k) => k.clone(),
        None => id.to_string(),
    };
    Ok(Event {
        id,
        key,
        at,
        kind,
        change,
    })
}

/// The events of stream entries; an entry that is not one is passed over, and logged.
fn events(entries: Vec<Entry>) -> Vec<Arc<Event>> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| match event(&id, fields) {
            Ok(e) => Some(Arc::new(e)),
            Err(why) => {
                warn!(%id, %why, "an event stream entry that is not an event; passed over");
                None
            }
        })
        .collect()
}

/// `XINFO STREAM` as a map of its fields, or none when there is no stream yet.
fn stream_info(value: Value) -> HashMap<String, Value> {
    let Ok(items) = redis::from_redis_value::<Vec<Value>>(value) else {
        return HashMap::new();
    };
    items
        .chunks(2)
        .filter_map(|pair| match pair {
            [name, v] => redis::from_redis_value::<String>(name.clone())
                .ok()
                .map(|n| (n, v.clone())),
            _ => None,
        })
        .collect()
}

fn info_id(info: &HashMap<String, Value>, name: &str) -> Option<EventId> {
    let text: String = redis::from_redis_value(info.get(name)?.clone()).ok()?;
    text.parse().ok().filter(|id| *id != EventId::ZERO)
}

impl RedisStore {
    /// The log a script writing to `key`'s slot appends to.
    pub(super) fn log_key(&self, key: &str) -> String {
        if self.inner.settings.cluster {
            self.inner.keys.outbox(slot(key))
        } else {
            self.inner.keys.events()
        }
    }

    pub(super) async fn read_events_on(
        &self,
        after: Option<EventId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let conn = self.conn().await?;
        let key = self.inner.keys.events();
        let mut range = redis::cmd("XRANGE");
        range.arg(&key);
        match after {
            Some(after) => range.arg(format!("({after}")),
            None => range.arg("-"),
        };
        range.arg("+").arg("COUNT").arg(limit.max(1));
        let found = entries(self.query::<Value>(&conn, &range).await?)?;
        // after the range: what was trimmed by then decides whether the range has a gap
        let mut xinfo = redis::cmd("XINFO");
        xinfo.arg("STREAM").arg(&key);
        let info = match self.query::<Value>(&conn, &xinfo).await {
            Ok(v) => stream_info(v),
            Err(StoreError::Unavailable(m)) if m.contains("no such key") => HashMap::new(),
            Err(e) => return Err(e),
        };
        let last = info_id(&info, "last-generated-id");
        if let Some(after) = after {
            let first: Option<EventId> = info
                .get("first-entry")
                .and_then(|v| redis::from_redis_value::<(String, Value)>(v.clone()).ok())
                .and_then(|(id, _)| id.parse().ok());
            let count = |name: &str| -> u64 {
                info.get(name)
                    .and_then(|v| redis::from_redis_value::<u64>(v.clone()).ok())
                    .unwrap_or(0)
            };
            // Trimming keeps no record of what it dropped (`max-deleted-entry-id` follows XDEL
            // only), but it drops from the front: when entries are gone, every one of them
            // came before the first kept, or was the last given when none is kept. A cursor
            // before the first kept is refused, even the id of the very last entry dropped.
            let trimmed = if count("entries-added") <= count("length") {
                None
            } else {
                first.or(last)
            };
            let oldest = first.map_or_else(|| "none".to_owned(), |f| f.to_string());
            check_cursor(after, last, trimmed, || oldest)?;
        }
        Ok(Page {
            events: events(found),
            last,
        })
    }

    /// Turns the alert states of a sku and reports each turn; see `StockStore::record_alerts`.
    pub(super) async fn record_alerts_on(
        &self,
        sku: &str,
        seen: &HashMap<String, StockLevel>,
        checks: &[AlertCheck],
    ) -> Result<Option<AlertTurns>, StoreError> {
        if checks.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let conn = self.conn().await?;
        let keys = [self.inner.keys.alerts(sku), self.inner.keys.levels(sku)];
        let mut args = vec![sku.to_owned(), seen.len().to_string()];
        for (node, l) in seen {
            args.extend([
                node.clone(),
                l.on_hand.to_string(),
                l.reserved.to_string(),
                l.safety_stock.to_string(),
                l.last_sequence.to_string(),
                l.reorder_point.map(|r| r.to_string()).unwrap_or_default(),
            ]);
        }
        for c in checks {
            args.extend([
                c.field.clone(),
                c.ats.to_string(),
                c.threshold.map(|t| t.to_string()).unwrap_or_default(),
                c.hysteresis.to_string(),
                c.low.as_str().to_owned(),
                c.recovered.as_str().to_owned(),
                c.node_id.clone(),
                c.segment.clone(),
            ]);
        }
        let reply = self
            .eval(
                &conn,
                &self.inner.scripts.alerts,
                &[&keys[0], &keys[1]],
                &args,
            )
            .await?;
        let moved = match &reply {
            Value::BulkString(s) => s.as_slice() == b"moved",
            Value::SimpleString(s) => s == "moved",
            _ => false,
        };
        if moved {
            return Ok(None);
        }
        let states: Vec<(i64, String)> = redis::from_redis_value(reply)
            .map_err(|e| StoreError::Corrupt(format!("the alerts script answered: {e}")))?;
        if states.len() != checks.len() {
            return Err(StoreError::Corrupt(format!(
                "the alerts script answered {} states for {} checks",
                states.len(),
                checks.len()
            )));
        }
        Ok(Some(
            states
                .iter()
                .map(|(low, kind)| (*low == 1, EventKind::parse(kind)))
                .collect(),
        ))
    }

    /// A receiver of every event from now on; starts this replica's reader when none runs.
    pub(super) async fn subscribe_on(&self) -> Result<broadcast::Receiver<Arc<Event>>, StoreError> {
        if let Some(tx) = self.inner.events.live.lock().as_ref() {
            return Ok(tx.subscribe());
        }
        // where the reader starts: the newest entry now, so nothing after this call is missed
        let conn = self.conn().await?;
        let mut newest = redis::cmd("XREVRANGE");
        newest
            .arg(self.inner.keys.events())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let start = entries(self.query::<Value>(&conn, &newest).await?)?
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |(id, _)| id);
        let mut live = self.inner.events.live.lock();
        if let Some(tx) = live.as_ref() {
            return Ok(tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(self.inner.events.live_capacity.max(1));
        *live = Some(tx.clone());
        tokio::spawn(self.clone().follow(tx, start));
        Ok(rx)
    }

    /// The reader: polls the stream after `last` and hands every entry on, until nobody listens.
    async fn follow(self, tx: broadcast::Sender<Arc<Event>>, mut last: String) {
        let key = self.inner.keys.events();
        let mut idle = 0u32;
        loop {
            {
                let mut live = self.inner.events.live.lock();
                if tx.receiver_count() == 0 {
                    *live = None;
                    debug!("no watcher left; the event reader stops");
                    return;
                }
            }
            let mut read = redis::cmd("XREAD");
            read.arg("COUNT")
                .arg(BATCH)
                .arg("STREAMS")
                .arg(&key)
                .arg(&last);
            let got = match self.conn().await {
                Ok(conn) => {
                    self.query::<Option<Vec<(String, Value)>>>(&conn, &read)
                        .await
                }
                Err(e) => Err(e),
            };
            let found = match got {
                Ok(Some(streams)) => streams
                    .into_iter()
                    .next()
                    .map(|(_, v)| entries(v))
                    .transpose(),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            match found {
                Ok(Some(found)) if !found.is_empty() => {
                    idle = 0;
                    if let Some((id, _)) = found.last() {
                        last = id.clone();
                    }
                    for e in events(found) {
                        crate::metrics::event_logged(e.kind);
                        let _ = tx.send(e);
                    }
                    continue;
                }
                Ok(_) => idle = idle.saturating_add(1),
                Err(e) => {
                    // Redis down or slow: look again twice a second, not at polling speed
                    warn!(error = %e, "reading the event stream failed; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            let wait = Duration::from_millis((5u64 << idle.min(2)).min(20));
            tokio::time::sleep(wait).await;
        }
    }

    pub(super) async fn trim_events_on(&self, now: Millis) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        let horizon = u64::try_from(now)
            .unwrap_or(0)
            .saturating_sub(self.inner.event_retention.max_age_ms);
        let mut trim = redis::cmd("XTRIM");
        // exact, so that an event past its age is gone when the sweep says so
        trim.arg(self.inner.keys.events()).arg("MINID").arg(horizon);
        self.query::<i64>(&conn, &trim).await?;
        if self.inner.settings.cluster {
            let due = {
                let mut last = self.inner.events.last_scan.lock();
                let due = last.is_none_or(|t| t.elapsed() >= OUTBOX_SCAN);
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            };
            // in the background: the sweep that calls this returns holds, and must not wait
            // for thousands of outboxes to be looked at
            if due && !self.inner.events.scanning.swap(true, Ordering::AcqRel) {
                let store = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = store.scan_outboxes().await {
                        warn!(error = %e, "looking over the event outboxes failed; the next sweep tries again");
                    }
                    store.inner.events.scanning.store(false, Ordering::Release);
                });
            }
        }
        let mut len = redis::cmd("XLEN");
        len.arg(self.inner.keys.events());
        self.query::<u64>(&conn, &len).await
    }

    /// Notes that a script appended to the outbox of `slot` (on a cluster), for the mover.
    pub(super) fn outbox_written(&self, slot: u16) {
        let tx = self.inner.events.mover.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(self.clone().mover(rx));
            tx
        });
        let _ = tx.send(slot);
    }

    /// Moves the outboxes it is told of, each once per batch of notices.
    async fn mover(self, mut rx: mpsc::UnboundedReceiver<u16>) {
        while let Some(first) = rx.recv().await {
            let mut slots = vec![first];
            while let Ok(s) = rx.try_recv() {
                slots.push(s);
            }
            slots.sort_unstable();
            slots.dedup();
            for s in slots {
                match self.move_outbox(s).await {
                    Ok(true) => {}
                    // another replica moves it; look again shortly, in case it had read before
                    // this replica's entry was written
                    Ok(false) => {
                        let again = self.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            again.outbox_written(s);
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, slot = s, "moving an event outbox failed; the scan will retry")
                    }
                }
            }
        }
    }

    /// Every outbox with entries, moved.
    async fn scan_outboxes(&self) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        let all: Vec<u16> = (0..SLOTS).collect();
        for chunk in all.chunks(1024) {
            let lens = futures_util::future::try_join_all(chunk.iter().map(|&s| {
                let conn = &conn;
                async move {
                    let mut len = redis::cmd("XLEN");
                    len.arg(self.inner.keys.outbox(s));
                    self.query::<u64>(conn, &len).await.map(|n| (s, n))
                }
            }))
            .await?;
            for (s, n) in lens {
                if n > 0 {
                    self.outbox_written(s);
                }
            }
        }
        Ok(())
    }

    /// Takes the entries of one outbox to the stream, oldest first, and trims them; false when
    /// another replica is moving it.
    pub(super) async fn move_outbox(&self, slot: u16) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let keys = &self.inner.keys;
        let (outbox, lock) = (keys.outbox(slot), keys.mover_lock(slot));
        let token = attempt_token();
        let mut take = redis::cmd("SET");
        take.arg(&lock)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(self.inner.settings.op_timeout_ms.saturating_mul(4));
        if self.query::<Option<String>>(&conn, &take).await?.is_none() {
            return Ok(false);
        }
        let moved = self.move_entries(&conn, slot, &outbox).await;
        let mut free = redis::cmd("EVAL");
        free.arg("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0")
            .arg(1)
            .arg(&lock)
            .arg(&token);
        let freed = self.query::<i64>(&conn, &free).await;
        moved?;
        freed?;
        Ok(true)
    }

    async fn move_entries(
        &self,
        conn: &super::connection::Conn,
        slot: u16,
        outbox: &str,
    ) -> Result<(), StoreError> {
        let stream = self.inner.keys.events();
        loop {
            let mut range = redis::cmd("XRANGE");
            range.arg(outbox).arg("-").arg("+").arg("COUNT").arg(BATCH);
            let found = entries(self.query::<Value>(conn, &range).await?)?;
            let Some((last, _)) = found.last() else {
                return Ok(());
            };
            let last: EventId = last
                .parse()
                .map_err(|e: String| StoreError::Corrupt(format!("an event outbox entry: {e}")))?;
            let mut pipe = redis::pipe();
            for (id, fields) in &found {
                let add = pipe
                    .cmd("XADD")
                    .arg(&stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.inner.event_retention.max_events)
                    .arg("*");
                for (name, value) in fields {
                    add.arg(name).arg(value);
                }
                add.arg("ky").arg(format!("{slot}-{id}"));
                // the time of the change: the outbox entry's, not the move's
                let at = id.split_once('-').map_or("0", |(ms, _)| ms);
                add.arg("at").arg(at);
            }
            let mut c = conn.clone();
            self.timed("event_move", pipe.query_async::<Value>(&mut c))
                .await?;
            let mut trim = redis::cmd("XTRIM");
            trim.arg(outbox).arg("MINID").arg(last.next().to_string());
            self.query::<i64>(conn, &trim).await?;
        }
    }
}
