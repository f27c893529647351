//! The production store: stock, holds and reservations in Redis or Redis Cluster, shared by
//! every replica of the service.
//!
//! Every key is hash-tagged so that what must change together sits in one cluster slot, and
//! every change to one slot is one Lua script (loaded once, called by its SHA1):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:{s:SKU}:lv` | hash | levels: `NODE` → "on hand,reserved,safety stock,last feed sequence,pending" |
//! | `P:{s:SKU}:ho` | hash | holds: `ORDER` → the attempt token and the line, node and units it holds of this sku |
//! | `P:{s:SKU}:void:TOKEN` | string | an aborted attempt, so that a late hold of it is refused |
//! | `P:{o:ORDER}` | hash | the reservation record: state, token, expiry, deadline, day, body, allocations |
//! | `P:{x}:expiry` | sorted set | `TOKEN:ORDER` by the time the attempt or hold must be looked at |
//! | `P:{x}:claim:DUE:TOKEN:ORDER` | string | a sweeper's short claim on one due entry |
//! | `P:{c:DAY}:used` / `:orders` | hash | node capacity used on a day, and by which order (per line and node) |
//! | `P:{m:N}:marker` | string | one per part of the slot space, to tell when Redis lost its data |
//!
//! On a single Redis a reserve is one script over all its keys. On a cluster it spans slots
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

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::{join, join_all, join3, try_join_all};
use futures_util::stream::{self, StreamExt};
use parking_lot::RwLock;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Script, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex as AsyncMutex;
use tracing::{debug, error, info, warn};

use super::{
    Allocation, HoldRequest, MAX_STOCK_UNITS, Reservation, ReservationState, ReserveOutcome,
    StockLevel, StockStore, StockUpdate, StockView, StoreError, UpdateKind, UpdateResult,
};
use crate::clock::Millis;
use crate::config::{RedisSettings, StockSeed, redact_url};
use crate::domain::Plan;

/// Updates sent to Redis in one script call. It bounds how long one call holds Redis (and so
/// what a feed adds to the latency of reserves): at 1,024 the reserve p99 under a 5,000
/// updates/s feed was about 11 ms, at 256 about 8 ms, with the feed alone still above 150,000
/// updates/s.
const FEED_CHUNK: usize = 256;
/// Due entries of the expiry set taken per round of a sweep.
const SWEEP_BATCH: isize = 256;
/// Due entries a refused reserve's sweep takes per round: few, so that it keeps to its budget.
const RESERVE_SWEEP_BATCH: isize = 8;
/// Orders a sweep works on at once.
const SWEEP_CONCURRENCY: usize = 32;
/// Due entries of the expiry set a read looks at to leave their units out; beyond that many
/// due at once (a sweep far behind), a read may count some until the sweep catches up.
const DUE_LIMIT: isize = 1024;
/// The share of the operation timeout a read waits for the expiry set and for the records of
/// due orders that hold what it reads; beyond it, their units are counted as still reserved.
const DUE_LOOKUP_SHARE: f64 = 0.25;
/// How long a sweeper's claim on a due entry lasts, in operation timeouts: long enough for the
/// calls that settle it in the common case, short enough that another sweeper soon takes over
/// one left unsettled (a call failed); a claim that lapses early only means work done twice,
/// which is idempotent.
const CLAIM_OPS: u64 = 2;
/// How soon a failed connection is tried again; calls in between fail at once.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);
/// Markers spread over the slot space; a master that owns at least this share of the slots in
/// one range holds one of them.
const MARKERS: u16 = 16;
const MILLIS_PER_DAY: i64 = 86_400_000;
/// How long a reserve waits for units held by other attempts still in flight.
const BUSY_WAIT: Duration = Duration::from_secs(2);

enum Verdict {
    Held,
    /// Held by attempts still in flight; worth waiting for.
    Busy(ReserveOutcome),
    Refused(ReserveOutcome),
}

mod lua {
    pub const PRELUDE: &str = include_str!("lua/prelude.lua");
    pub const FEED: &str = include_str!("lua/feed.lua");
    pub const SEED: &str = include_str!("lua/seed.lua");
    pub const HOLD: &str = include_str!("lua/hold.lua");
    pub const UNHOLD: &str = include_str!("lua/unhold.lua");
    pub const SHIP: &str = include_str!("lua/ship.lua");
    pub const CAPACITY_TAKE: &str = include_str!("lua/capacity_take.lua");
    pub const CAPACITY_GIVE: &str = include_str!("lua/capacity_give.lua");
    pub const CONFIRM: &str = include_str!("lua/confirm.lua");
    pub const RESERVE_WHOLE: &str = include_str!("lua/reserve_whole.lua");
    pub const RECORD_CREATE: &str = include_str!("lua/record_create.lua");
    pub const RECORD_FINISH: &str = include_str!("lua/record_finish.lua");
    pub const RECORD_DELETE: &str = include_str!("lua/record_delete.lua");
    pub const RECORD_COMMIT: &str = include_str!("lua/record_commit.lua");
    pub const RECORD_EXPIRE: &str = include_str!("lua/record_expire.lua");
    pub const RECORD_RELEASE_BEGIN: &str = include_str!("lua/record_release_begin.lua");
    pub const RECORD_RELEASE: &str = include_str!("lua/record_release.lua");
    pub const RECORD_SHIP: &str = include_str!("lua/record_ship.lua");
}

/// A script with the name its round trips are measured under.
struct Named {
    name: &'static str,
    script: Script,
    /// The whole source, sent with `EVAL` to a node that does not have the script yet.
    code: String,
}

struct Scripts {
    feed: Named,
    seed: Named,
    hold: Named,
    unhold: Named,
    ship: Named,
    capacity_take: Named,
    capacity_give: Named,
    confirm: Named,
    reserve_whole: Named,
    record_create: Named,
    record_finish: Named,
    record_delete: Named,
    record_commit: Named,
    record_expire: Named,
    record_release_begin: Named,
    record_release: Named,
    record_ship: Named,
}

impl Scripts {
    fn new() -> Self {
        let s = |name: &'static str, body: &str| {
            let code = format!("{}\n{body}", lua::PRELUDE);
            Named {
                name,
                script: Script::new(&code),
                code,
            }
        };
        Self {
            feed: s("feed", lua::FEED),
            seed: s("seed", lua::SEED),
            hold: s("hold", lua::HOLD),
            unhold: s("unhold", lua::UNHOLD),
            ship: s("ship", lua::SHIP),
            capacity_take: s("capacity_take", lua::CAPACITY_TAKE),
            capacity_give: s("capacity_give", lua::CAPACITY_GIVE),
            confirm: s("confirm", lua::CONFIRM),
            reserve_whole: s("reserve_whole", lua::RESERVE_WHOLE),
            record_create: s("record_create", lua::RECORD_CREATE),
            record_finish: s("record_finish", lua::RECORD_FINISH),
            record_delete: s("record_delete", lua::RECORD_DELETE),
            record_commit: s("record_commit", lua::RECORD_COMMIT),
            record_expire: s("record_expire", lua::RECORD_EXPIRE),
            record_release_begin: s("record_release_begin", lua::RECORD_RELEASE_BEGIN),
            record_release: s("record_release", lua::RECORD_RELEASE),
            record_ship: s("record_ship", lua::RECORD_SHIP),
        }
    }
}

/// A connection to a single Redis or to a cluster; both multiplex and are cheap to clone.
#[derive(Clone)]
enum Conn {
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

/// The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key.
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        bytes[open + 1..]
            .iter()
            .position(|&b| b == b'}')
            .filter(|&len| len > 0)
            .map(|len| &bytes[open + 1..open + 1 + len])
    });
    crc16(tagged.unwrap_or(bytes)) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Key names; see the module docs for the layout.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
    markers: Vec<String>,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        // For each sixteenth of the slot space, a tag that hashes into it.
        let width = 16384 / MARKERS;
        let mut markers = vec![String::new(); usize::from(MARKERS)];
        let mut found = 0;
        for n in 0u32.. {
            let key = format!("{prefix}:{{m:{n}}}:marker");
            let bucket = usize::from(slot(&key) / width);
            if markers[bucket].is_empty() {
                markers[bucket] = key;
                found += 1;
                if found == markers.len() {
                    break;
                }
            }
        }
        Self {
            prefix: prefix.to_owned(),
            markers,
        }
    }

    fn levels(&self, sku: &str) -> String {
        format!("{}:{{s:{sku}}}:lv", self.prefix)
    }

    fn holds(&self, sku: &str) -> String {
        format!("{}:{{s:{sku}}}:ho", self.prefix)
    }

    fn sku_void(&self, sku: &str, token: &str) -> String {
        format!("{}:{{s:{sku}}}:void:{token}", self.prefix)
    }

    fn record(&self, order_id: &str) -> String {
        format!("{}:{{o:{order_id}}}", self.prefix)
    }

    fn expiry(&self) -> String {
        format!("{}:{{x}}:expiry", self.prefix)
    }

    fn capacity_used(&self, day: i64) -> String {
        format!("{}:{{c:{day}}}:used", self.prefix)
    }

    fn capacity_orders(&self, day: i64) -> String {
        format!("{}:{{c:{day}}}:orders", self.prefix)
    }

    fn capacity_void(&self, day: i64, token: &str) -> String {
        format!("{}:{{c:{day}}}:void:{token}", self.prefix)
    }

    /// A sweeper's claim on an expiry-set entry due at `due`; a re-filed entry is a new one.
    fn claim(&self, member: &str, due: &str) -> String {
        format!("{}:{{x}}:claim:{due}:{member}", self.prefix)
    }
}

/// The part of a reservation that never changes once written.
#[derive(Debug, Serialize, Deserialize)]
struct Body {
    order_id: String,
    fingerprint: String,
    segment: String,
    plan: Plan,
    created_at: Millis,
    capacity_day: i64,
}

/// A reservation record as stored.
#[derive(Debug)]
struct Record {
    state: String,
    token: String,
    expires_at: Millis,
    deadline: Millis,
    body: Body,
    allocations: Vec<Allocation>,
    /// Lines being given back (none named: all), and by when a sweep should finish it.
    releasing: Option<(Vec<String>, Millis)>,
}

impl Record {
    fn reservation(&self) -> Result<Reservation, StoreError> {
        let state = match self.state.as_str() {
            "held" => ReservationState::Held,
            "committed" => ReservationState::Committed,
            "released" => ReservationState::Released,
            "expired" => ReservationState::Expired,
            "fulfilled" => ReservationState::Fulfilled,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "order {:?} has no reservation yet (its record is {other})",
                    self.body.order_id
                )));
            }
        };
        let b = &self.body;
        Ok(Reservation {
            order_id: b.order_id.clone(),
            fingerprint: b.fingerprint.clone(),
            segment: b.segment.clone(),
            state,
            plan: b.plan.clone(),
            allocations: self.allocations.clone(),
            created_at: b.created_at,
            expires_at: (self.expires_at > 0).then_some(self.expires_at),
            capacity_day: b.capacity_day,
        })
    }

    /// Still being made, or abandoned while being made.
    fn unfinished(&self) -> bool {
        matches!(self.state.as_str(), "pending" | "aborted")
    }

    fn skus(&self) -> Vec<String> {
        distinct_skus(&self.allocations)
    }
}

/// The skus of some allocations, sorted, each once.
fn distinct_skus<'a>(allocations: impl IntoIterator<Item = &'a Allocation>) -> Vec<String> {
    let mut skus: Vec<String> = allocations.into_iter().map(|a| a.sku.clone()).collect();
    skus.sort();
    skus.dedup();
    skus
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|t| t.parse().ok()),
    }
}

fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(v) | Value::Set(v) => v,
        Value::Nil => Vec::new(),
        other => vec![other],
    }
}

/// A script's reply `{code, st, tok, exp, dl, day, body, al, rel, rdl}`: the code, and the
/// record if any.
fn coded_record(reply: Value) -> Result<(String, Option<Record>), StoreError> {
    let values = items(reply);
    let code = values
        .first()
        .and_then(text)
        .ok_or_else(|| corrupt("a script reply without a code"))?;
    let record = if values.len() >= 10 {
        parse_record(&values[1..10])?
    } else {
        None
    };
    Ok((code, record))
}

fn parse_record(v: &[Value]) -> Result<Option<Record>, StoreError> {
    let Some(state) = text(&v[0]) else {
        return Ok(None);
    };
    let field = |i: usize, name: &str| {
        text(&v[i]).ok_or_else(|| corrupt(format!("a reservation record without {name}")))
    };
    let body_text = field(5, "its body")?;
    let body: Body = serde_json::from_str(&body_text)
        .map_err(|e| corrupt(format!("a reservation body: {e}")))?;
    let al = field(6, "its allocations")?;
    let allocations: Vec<Allocation> = if al == "{}" {
        Vec::new()
    } else {
        serde_json::from_str(&al).map_err(|e| corrupt(format!("reservation allocations: {e}")))?
    };
    let number = |i: usize, name: &str| -> Result<Millis, StoreError> {
        int(&v[i]).ok_or_else(|| corrupt(format!("a reservation record without {name}")))
    };
    let releasing = match (v.get(7).and_then(text), v.get(8).and_then(int)) {
        (Some(lines), Some(deadline)) => Some((
            serde_json::from_str(&lines)
                .map_err(|e| corrupt(format!("lines being released: {e}")))?,
            deadline,
        )),
        _ => None,
    };
    Ok(Some(Record {
        state,
        token: field(1, "its token")?,
        expires_at: number(2, "its expiry")?,
        deadline: number(3, "its deadline")?,
        body,
        allocations,
        releasing,
    }))
}

/// What one sweep did: holds it expired, entries it settled, and entries it found due but
/// claimed by another sweeper.
#[derive(Debug, Default)]
struct SweepReport {
    expired: u64,
    settled: u64,
    in_flight: u64,
}

/// Units a sweep will give back: per (sku, node) of stock, and per node of a day's capacity.
#[derive(Debug, Default)]
struct DueUnits {
    stock: HashMap<(String, String), u64>,
    capacity: HashMap<String, u64>,
}

/// What a due attempt gives back when it is settled.
#[derive(Debug)]
enum Gives {
    All,
    Lines(Vec<String>),
}

impl Gives {
    fn covers(&self, line_id: &str) -> bool {
        match self {
            Gives::All => true,
            Gives::Lines(lines) => lines.iter().any(|l| l == line_id),
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

/// Characters of a script's error a message quotes at most: enough for Redis's reason and the
/// line of the script.
const SCRIPT_ERROR_CHARS: usize = 200;

/// The parts of a reservation record that say what settling it gives back.
#[derive(Debug)]
struct DueRecord {
    state: String,
    token: String,
    expires_at: Millis,
    deadline: Millis,
    day: Option<i64>,
    allocations: Vec<Allocation>,
    releasing: Option<(Vec<String>, Millis)>,
}

impl DueRecord {
    /// From `HMGET st tok exp dl day al rel rdl`; `None` when there is no record, or it does
    /// not read (then a read counts its units, as the sweep cannot give them back either).
    fn parse(v: &[Value]) -> Option<Self> {
        let state = text(v.first()?)?;
        let number = |i: usize| v.get(i).and_then(int);
        let releasing = match (v.get(6).and_then(text), number(7)) {
            (Some(lines), Some(deadline)) => Some((serde_json::from_str(&lines).ok()?, deadline)),
            _ => None,
        };
        let allocations = match v.get(5).and_then(text) {
            Some(al) if al != "{}" => serde_json::from_str(&al).ok()?,
            _ => Vec::new(),
        };
        Some(Self {
            state,
            token: v.get(1).and_then(text)?,
            expires_at: number(2)?,
            deadline: number(3)?,
            day: number(4),
            allocations,
            releasing,
        })
    }

    /// What settling this record for attempt `token` at `now` gives back, as
    /// [`RedisStore::settle_attempt`] decides it.
    fn gives(&self, token: &str, now: Millis) -> Option<Gives> {
        if self.token != token {
            return None;
        }
        match self.state.as_str() {
            "held" if self.expires_at <= now => Some(Gives::All),
            "pending" if self.deadline.min(self.expires_at) <= now => Some(Gives::All),
            "aborted" | "expired" => Some(Gives::All),
            "held" | "committed" => match &self.releasing {
                // a release of every line still keeps the capacity of units shipped
                Some((lines, deadline)) if *deadline <= now => Some(if lines.is_empty() {
                    Gives::Lines(self.allocations.iter().map(|a| a.line_id.clone()).collect())
                } else {
                    Gives::Lines(lines.clone())
                }),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A hold as a sku's holds hash keeps it: the attempt's token and (line, node, units) parts.
#[derive(Debug, Deserialize)]
struct StoredHold {
    t: String,
    a: Vec<(String, String, u64)>,
}

/// An order's capacity as a day's by-order hash keeps it: the token and per line and node
/// `[node, units, line]`, with a fourth element `1` once the line was given back (what is left
/// is what it keeps); `[node, units]` for an entry written before capacity was kept per line.
#[derive(Debug, Default, Deserialize)]
struct StoredCapacity {
    t: String,
    n: Vec<serde_json::Value>,
}

/// Units of capacity per node that `capacity_give.lua` gives back of this entry for what a
/// due attempt gives: the same decisions, made on what is read.
fn capacity_given(
    entry: &StoredCapacity,
    gives: &Gives,
    allocations: &[Allocation],
) -> BTreeMap<String, u64> {
    let mut given: BTreeMap<String, u64> = BTreeMap::new();
    let lines = match gives {
        Gives::All => None,
        Gives::Lines(lines) => Some(lines),
    };
    let whole = lines.is_none_or(|lines| allocations.iter().all(|a| lines.contains(&a.line_id)));
    let kept = capacity_kept(allocations, lines.map(Vec::as_slice).unwrap_or(&[]));
    for e in &entry.n {
        let (Some(node), Some(units)) = (
            e.get(0).and_then(|v| v.as_str()),
            e.get(1).and_then(|v| v.as_u64()),
        ) else {
            continue;
        };
        let line = e.get(2).and_then(|v| v.as_str());
        let keep = match (lines, line) {
            (None, _) => 0,
            (Some(lines), Some(line)) => {
                if e.get(3).and_then(|v| v.as_u64()) == Some(1) || !lines.iter().any(|l| l == line)
                {
                    continue;
                }
                kept.get(&(line.to_owned(), node.to_owned()))
                    .copied()
                    .unwrap_or(0)
            }
            (Some(_), None) if whole => kept
                .iter()
                .filter(|((_, n), _)| n == node)
                .map(|(_, k)| *k)
                .sum(),
            (Some(_), None) => continue,
        };
        *given.entry(node.to_owned()).or_default() += units.saturating_sub(keep);
    }
    given
}

/// What a due attempt holds of the skus a read looks at, and its entry in the day's
/// by-order capacity hash.
type DueHolds = (Vec<(String, StoredHold)>, Option<StoredCapacity>);

/// A token that names one attempt at reserving an order: unique across replicas and restarts.
fn attempt_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{:016x}", hasher.finish())
}

/// The expiry-set member of an attempt: `TOKEN:ORDER` (tokens are 16 hex digits).
fn member(token: &str, order_id: &str) -> String {
    format!("{token}:{order_id}")
}

fn split_member(member: &str) -> Option<(&str, &str)> {
    (member.len() > 17 && member.as_bytes()[16] == b':').then(|| (&member[..16], &member[17..]))
}

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
                scripts: Scripts::new(),
                seed,
                conn: RwLock::new(None),
                connecting: AsyncMutex::new(None),
                markers_seen: AtomicBool::new(false),
                data_losses: AtomicU64::new(0),
            }),
        })
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
            let mut info = s.urls[0]
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
    async fn conn(&self) -> Result<Conn, StoreError> {
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
    async fn timed<T>(
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
                super::quoted(&e.to_string(), SCRIPT_ERROR_CHARS)
            ))),
            Ok(Err(e)) => Err(StoreError::Unavailable(format!("Redis {what}: {e}"))),
            Err(_) => Err(StoreError::Unavailable(format!(
                "Redis {what}: no answer within {} ms",
                self.inner.settings.op_timeout_ms
            ))),
        }
    }

    async fn eval(
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
        for cmd in [&mut by_hash, &mut by_source] {
            cmd.arg(keys.len()).arg(keys).arg(args);
        }
        let mut conn = conn.clone();
        self.timed_as(script.name, true, async move {
            match by_hash.query_async::<Value>(&mut conn).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    by_source.query_async::<Value>(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        conn: &Conn,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let mut conn = conn.clone();
        self.timed("command", cmd.query_async::<T>(&mut conn)).await
    }

    /// Which script calls may share a batch: all of them on a single Redis, one slot's on a
    /// cluster.
    fn group(&self, key: &str) -> u16 {
        if self.inner.settings.cluster {
            slot(key)
        } else {
            0
        }
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
        Ok(seeded.iter().filter_map(int).sum::<i64>() as u64)
    }

    /// Up to `limit` entries of the expiry set due by `now`: (member, score as stored).
    async fn due_entries(
        &self,
        conn: &Conn,
        now: Millis,
        limit: isize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.query(
            conn,
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.inner.keys.expiry())
                .arg("-inf")
                .arg(now)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(limit),
        )
        .await
    }

    /// Every node's level of these skus: one `HGETALL` per sku (one field per node), sent
    /// together.
    async fn read_levels(&self, conn: &Conn, skus: &[String]) -> Result<StockView, StoreError> {
        let reads = skus.iter().map(|sku| {
            let key = self.inner.keys.levels(sku);
            async move {
                let fields: Vec<(String, String)> =
                    self.query(conn, redis::cmd("HGETALL").arg(&key)).await?;
                Ok::<_, StoreError>((sku.clone(), parse_levels(sku, &fields)?))
            }
        });
        Ok(try_join_all(reads).await?.into_iter().collect())
    }

    async fn read_capacity(
        &self,
        conn: &Conn,
        day: i64,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let fields: Vec<(String, i64)> = self
            .query(
                conn,
                redis::cmd("HGETALL").arg(self.inner.keys.capacity_used(day)),
            )
            .await?;
        Ok(fields
            .into_iter()
            .filter(|(_, used)| *used > 0)
            .map(|(node, used)| (node, used as u64))
            .collect())
    }

    /// Stock of these skus and the capacity used on `day` (when given) as of `now`. Alongside
    /// the levels it reads what is due by then; when anything is, it works out what a sweep
    /// will give back of it and leaves that out, writing nothing and waiting for no sweep.
    async fn read_at(
        &self,
        conn: &Conn,
        skus: &[String],
        day: Option<i64>,
        now: Millis,
    ) -> Result<(StockView, HashMap<String, u64>), StoreError> {
        let capacity = async {
            match day {
                Some(day) => self.read_capacity(conn, day).await,
                None => Ok(HashMap::new()),
            }
        };
        // What is due is looked up as briefly as the records of due orders (see `due_units`):
        // with the expiry set's master stalled, a read counts every hold as reserved rather
        // than wait for it.
        let due = async {
            let lookup = self.op_timeout().mul_f64(DUE_LOOKUP_SHARE);
            match tokio::time::timeout(lookup, self.due_entries(conn, now, DUE_LIMIT)).await {
                Ok(Ok(due)) => due,
                Ok(Err(e)) => {
                    debug!(error = %e, "what is due not read; holds stay counted");
                    Vec::new()
                }
                Err(_) => {
                    debug!("what is due not read in time; holds stay counted");
                    Vec::new()
                }
            }
        };
        let (due, stock, used) = join3(due, self.read_levels(conn, skus), capacity).await;
        let (mut stock, mut used) = (stock?, used?);
        if due.is_empty() {
            return Ok((stock, used));
        }
        if due.len() as isize == DUE_LIMIT {
            debug!(due = due.len(), "more holds due than a read looks at");
        }
        let due: Vec<(&str, &str)> = due.iter().filter_map(|(m, _)| split_member(m)).collect();
        let back = self.due_units(conn, &due, skus, day, now).await?;
        for ((sku, node), units) in back.stock {
            if let Some(level) = stock.get_mut(&sku).and_then(|m| m.get_mut(&node)) {
                level.reserved = level.reserved.saturating_sub(units);
            }
        }
        for (node, units) in back.capacity {
            if let Some(u) = used.get_mut(&node) {
                *u = u.saturating_sub(units);
            }
        }
        used.retain(|_, u| *u > 0);
        Ok((stock, used))
    }

    /// What a sweep will give back of these due attempts (token, order), of these skus and of
    /// the day's capacity: the same decisions as [`settle_attempt`](Self::settle_attempt),
    /// made on what is read, with nothing written.
    ///
    /// Only orders that hold these skus or the day's capacity under the due attempt's token are
    /// looked at further (their holds are read from the masters the levels and capacity were
    /// read from). Their records are read within [`DUE_LOOKUP_SHARE`] of the operation timeout:
    /// a record that does not come (its master stalled, or it does not parse) gives nothing
    /// back here, so its units are counted as still reserved. That is safe: a hold rechecks the
    /// stock atomically, and a reserve refused for want of them sweeps and tries again.
    async fn due_units(
        &self,
        conn: &Conn,
        due: &[(&str, &str)],
        skus: &[String],
        day: Option<i64>,
        now: Millis,
    ) -> Result<DueUnits, StoreError> {
        let keys = &self.inner.keys;
        let mut orders: Vec<&str> = due.iter().map(|(_, o)| *o).collect();
        orders.sort_unstable();
        orders.dedup();
        if orders.is_empty() || (skus.is_empty() && day.is_none()) {
            return Ok(DueUnits::default());
        }
        let tokens: HashMap<&str, Vec<&str>> = due.iter().fold(HashMap::new(), |mut m, (t, o)| {
            m.entry(*o).or_default().push(*t);
            m
        });
        let holds = try_join_all(skus.iter().map(|sku| {
            let orders = &orders;
            async move {
                let values: Vec<Option<String>> = self
                    .query(conn, redis::cmd("HMGET").arg(keys.holds(sku)).arg(orders))
                    .await?;
                Ok::<_, StoreError>((sku, values))
            }
        }));
        let capacity = async {
            match day {
                Some(day) => self
                    .query::<Vec<Option<String>>>(
                        conn,
                        redis::cmd("HMGET")
                            .arg(keys.capacity_orders(day))
                            .arg(&orders),
                    )
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let (holds, capacity) = join(holds, capacity).await;
        let is_due =
            |order: &str, token: &str| tokens.get(order).is_some_and(|t| t.contains(&token));
        // (order, token) → its holds of these skus, and its capacity entry of the day
        let mut held: BTreeMap<(&str, String), DueHolds> = BTreeMap::new();
        for (sku, values) in holds? {
            for (order, value) in orders.iter().zip(values) {
                let Some(hold) = value.and_then(|v| serde_json::from_str::<StoredHold>(&v).ok())
                else {
                    continue;
                };
                if is_due(order, &hold.t) {
                    let at = held.entry((*order, hold.t.clone())).or_default();
                    at.0.push((sku.clone(), hold));
                }
            }
        }
        if let Some(values) = capacity? {
            for (order, value) in orders.iter().zip(values) {
                let Some(entry) =
                    value.and_then(|v| serde_json::from_str::<StoredCapacity>(&v).ok())
                else {
                    continue;
                };
                if is_due(order, &entry.t) {
                    let token = entry.t.clone();
                    held.entry((*order, token)).or_default().1 = Some(entry);
                }
            }
        }
        let mut back = DueUnits::default();
        if held.is_empty() {
            return Ok(back);
        }
        let lookup = self.op_timeout().mul_f64(DUE_LOOKUP_SHARE);
        let records = join_all(held.keys().map(|(order, _)| async move {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(keys.record(order))
                .arg(&["st", "tok", "exp", "dl", "day", "al", "rel", "rdl"]);
            let read = self.query::<Vec<Value>>(conn, &cmd);
            match tokio::time::timeout(lookup, read).await {
                Ok(Ok(values)) => DueRecord::parse(&values),
                Ok(Err(e)) => {
                    debug!(order, error = %e, "a due record not read; its units stay counted");
                    None
                }
                Err(_) => {
                    debug!(
                        order,
                        "a due record not read in time; its units stay counted"
                    );
                    None
                }
            }
        }))
        .await;
        for (((_, token), (holds, capacity)), record) in held.into_iter().zip(records) {
            let Some(record) = record else { continue };
            let Some(g) = record.gives(&token, now) else {
                continue;
            };
            for (sku, hold) in holds {
                for (line, node, units) in hold.a {
                    if g.covers(&line) {
                        *back.stock.entry((sku.clone(), node)).or_default() += units;
                    }
                }
            }
            if let (Some(entry), Some(day)) = (capacity, day)
                && record.day == Some(day)
            {
                for (node, units) in capacity_given(&entry, &g, &record.allocations) {
                    *back.capacity.entry(node).or_default() += units;
                }
            }
        }
        Ok(back)
    }

    async fn read_record(&self, conn: &Conn, order_id: &str) -> Result<Option<Record>, StoreError> {
        let values: Vec<Value> = self
            .query(
                conn,
                redis::cmd("HMGET")
                    .arg(self.inner.keys.record(order_id))
                    .arg(&["st", "tok", "exp", "dl", "day", "body", "al", "rel", "rdl"]),
            )
            .await?;
        if values.len() != 9 {
            return Err(corrupt("a reservation record of the wrong shape"));
        }
        parse_record(&values)
    }

    async fn zadd(&self, conn: &Conn, at: Millis, member: &str) -> Result<(), StoreError> {
        self.query::<i64>(
            conn,
            redis::cmd("ZADD")
                .arg(self.inner.keys.expiry())
                .arg(at)
                .arg(member),
        )
        .await
        .map(drop)
    }

    async fn zrem(&self, conn: &Conn, member: &str) -> Result<(), StoreError> {
        self.query::<i64>(
            conn,
            redis::cmd("ZREM").arg(self.inner.keys.expiry()).arg(member),
        )
        .await
        .map(drop)
    }

    /// Gives back whatever an attempt holds of these skus and of its day's capacity. With
    /// `void`, also marks the attempt so that a hold it makes later is refused.
    async fn undo(
        &self,
        conn: &Conn,
        order_id: &str,
        token: &str,
        skus: &[String],
        day: i64,
        void: bool,
    ) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let void_ttl = if void { self.retention_ms() } else { 0 }.to_string();
        let base = vec![order_id.to_owned(), token.to_owned(), void_ttl];
        let skus = skus.iter().map(|sku| {
            let (lv, ho, v) = (keys.levels(sku), keys.holds(sku), keys.sku_void(sku, token));
            let args = base.clone();
            async move {
                self.eval(conn, &self.inner.scripts.unhold, &[&lv, &ho, &v], &args)
                    .await
            }
        });
        let (used, orders, v) = (
            keys.capacity_used(day),
            keys.capacity_orders(day),
            keys.capacity_void(day, token),
        );
        let capacity_keys = [used.as_str(), orders.as_str(), v.as_str()];
        let capacity = self.eval(
            conn,
            &self.inner.scripts.capacity_give,
            &capacity_keys,
            &base,
        );
        let (skus, capacity) = join(try_join_all(skus), capacity).await;
        skus?;
        capacity?;
        Ok(())
    }

    /// Settles one attempt found in the expiry set: expires a hold past its expiry (giving its
    /// stock back), aborts an attempt past its deadline, re-files a hold not yet due, forgets
    /// one that is finished. Returns whether this call expired a hold.
    async fn settle_attempt(
        &self,
        conn: &Conn,
        order_id: &str,
        token: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let key = self.inner.keys.record(order_id);
        let reply = self
            .eval(
                conn,
                &self.inner.scripts.record_expire,
                &[&key],
                &[
                    now.to_string(),
                    token.to_owned(),
                    self.retention_ms().to_string(),
                ],
            )
            .await?;
        let (code, record) = coded_record(reply)?;
        let member = member(token, order_id);
        let Some(record) = record else {
            // No such attempt: it finished and was rolled back, or its record was never made.
            self.zrem(conn, &member).await?;
            return Ok(false);
        };
        let changed = code == "changed";
        if let Some((lines, deadline)) = &record.releasing
            && matches!(record.state.as_str(), "held" | "committed")
        {
            if *deadline <= now {
                warn!(order_id, "finishing a release that was cut off");
                self.complete_release(conn, order_id, &record, lines)
                    .await?;
            } else {
                self.zadd(conn, *deadline, &member).await?;
            }
            return Ok(false);
        }
        match record.state.as_str() {
            "expired" | "aborted" => {
                let aborted = record.state == "aborted";
                self.undo(
                    conn,
                    order_id,
                    token,
                    &record.skus(),
                    record.body.capacity_day,
                    aborted,
                )
                .await?;
                if aborted {
                    self.eval(
                        conn,
                        &self.inner.scripts.record_delete,
                        &[&key],
                        &[token.to_owned()],
                    )
                    .await?;
                    warn!(order_id, "an unfinished reservation was rolled back");
                }
                self.zrem(conn, &member).await?;
                Ok(changed && !aborted)
            }
            "held" => {
                // a replica that died between holding the record and confirming its units
                // left them pending: confirm them (a no-op when done)
                self.confirm(conn, order_id, token, &record.skus()).await?;
                self.zadd(conn, record.expires_at, &member).await?;
                Ok(false)
            }
            "pending" => {
                self.zadd(conn, record.deadline.min(record.expires_at), &member)
                    .await?;
                Ok(false)
            }
            "committed" => {
                // a commit cut off after the record changed left its units pending (when the
                // reserve's own confirm was cut off too) and its entry here
                self.confirm(conn, order_id, token, &record.skus()).await?;
                self.zrem(conn, &member).await?;
                Ok(false)
            }
            _ => {
                self.zrem(conn, &member).await?;
                Ok(false)
            }
        }
    }

    /// The record of an order, with a hold past its expiry expired and an attempt past its
    /// deadline rolled back first.
    async fn current_record(
        &self,
        conn: &Conn,
        order_id: &str,
        now: Millis,
    ) -> Result<Option<Record>, StoreError> {
        let Some(record) = self.read_record(conn, order_id).await? else {
            return Ok(None);
        };
        let due = match record.state.as_str() {
            "held" => record.expires_at <= now,
            "pending" => record.deadline.min(record.expires_at) <= now,
            "aborted" => true,
            _ => false,
        };
        if !due {
            return Ok(Some(record));
        }
        self.settle_attempt(conn, order_id, &record.token, now)
            .await?;
        self.read_record(conn, order_id).await
    }

    /// One feed chunk of snapshots and deltas of skus in one group, in order.
    async fn apply_levels(
        &self,
        conn: &Conn,
        updates: &[(usize, &StockUpdate)],
        results: &mut [Option<UpdateResult>],
    ) -> Result<(), StoreError> {
        let mut skus: Vec<&str> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        let mut args = Vec::with_capacity(updates.len() * 6);
        for (_, u) in updates {
            let index = match skus.iter().position(|s| *s == u.sku) {
                Some(i) => i,
                None => {
                    skus.push(&u.sku);
                    keys.extend([
                        self.inner.keys.levels(&u.sku),
                        self.inner.keys.holds(&u.sku),
                    ]);
                    skus.len() - 1
                }
            };
            let (kind, value, safety) = match &u.kind {
                UpdateKind::Snapshot {
                    on_hand,
                    safety_stock,
                } => (
                    "s",
                    on_hand.to_string(),
                    safety_stock.map(|s| s.to_string()).unwrap_or_default(),
                ),
                UpdateKind::Delta { change } => ("d", change.to_string(), String::new()),
                UpdateKind::Shipment { .. } => {
                    return Err(corrupt("a shipment in a batch of snapshots and deltas"));
                }
            };
            args.extend([
                (index + 1).to_string(),
                u.node_id.clone(),
                u.sequence.to_string(),
                kind.to_owned(),
                value,
                safety,
            ]);
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let reply = self
            .eval(conn, &self.inner.scripts.feed, &refs, &args)
            .await?;
        let codes = items(reply);
        if codes.len() != updates.len() {
            return Err(corrupt("a feed script reply of the wrong length"));
        }
        for ((i, u), code) in updates.iter().zip(codes) {
            results[*i] = Some(feed_result(u, code)?);
        }
        Ok(())
    }

    async fn apply_shipment(
        &self,
        conn: &Conn,
        u: &StockUpdate,
        order_id: &str,
        quantity: u64,
        now: Millis,
    ) -> Result<UpdateResult, StoreError> {
        let record = self.current_record(conn, order_id, now).await?;
        let verdict = match &record {
            None => format!("order_id: no reservation for order {order_id:?}"),
            Some(r) if r.state == "committed" => "1".to_owned(),
            Some(r) => {
                let state = if r.unfinished() {
                    "still being reserved"
                } else {
                    r.state.as_str()
                };
                format!("order_id: order {order_id:?} is {state}; only a committed order ships")
            }
        };
        let keys = &self.inner.keys;
        let (lv, ho) = (keys.levels(&u.sku), keys.holds(&u.sku));
        let reply = self
            .eval(
                conn,
                &self.inner.scripts.ship,
                &[&lv, &ho],
                &[
                    u.node_id.clone(),
                    u.sequence.to_string(),
                    order_id.to_owned(),
                    quantity.to_string(),
                    verdict,
                ],
            )
            .await?;
        let values = items(reply);
        let code = values.first().and_then(text).unwrap_or_default();
        match code.as_str() {
            "stale" => Ok(UpdateResult::Stale),
            "bad" => Ok(UpdateResult::Rejected(
                values.get(1).and_then(text).unwrap_or_default(),
            )),
            "corrupt" => Ok(UpdateResult::Rejected(unreadable_level_update(
                u,
                &values.get(1).and_then(text).unwrap_or_default(),
            ))),
            "short" => {
                let outstanding = values.get(1).and_then(int).unwrap_or(0);
                Ok(UpdateResult::Rejected(format!(
                    "quantity: order {order_id:?} has {outstanding} units of {} outstanding at {}, fewer than {quantity}",
                    u.sku, u.node_id
                )))
            }
            "ok" => {
                let record = record.ok_or_else(|| {
                    corrupt(format!(
                        "order {order_id:?} shipped without a reservation record"
                    ))
                })?;
                let mut args = vec![
                    record.token.clone(),
                    self.retention_ms().to_string(),
                    u.sku.clone(),
                    u.node_id.clone(),
                ];
                for pair in values[1..].chunks(2) {
                    args.push(pair.first().and_then(text).unwrap_or_default());
                    args.push(pair.get(1).and_then(text).unwrap_or_default());
                }
                let key = keys.record(order_id);
                self.eval(conn, &self.inner.scripts.record_ship, &[&key], &args)
                    .await?;
                Ok(UpdateResult::Applied)
            }
            other => Err(corrupt(format!("a shipment script code {other:?}"))),
        }
    }

    /// Gives back the outstanding units of the named lines (all if none are named) of a held
    /// or committed order, then marks them released in its record. Every step is idempotent,
    /// so a release cut off half-way is finished by running this again.
    async fn complete_release(
        &self,
        conn: &Conn,
        order_id: &str,
        record: &Record,
        line_ids: &[String],
    ) -> Result<Record, StoreError> {
        let keys = &self.inner.keys;
        let skus = distinct_skus(
            record
                .allocations
                .iter()
                .filter(|a| line_ids.is_empty() || line_ids.contains(&a.line_id))
                .filter(|a| a.outstanding() > 0),
        );
        let mut args = vec![order_id.to_owned(), record.token.clone(), "0".to_owned()];
        args.extend(line_ids.iter().cloned());
        let unholds = skus.iter().map(|sku| {
            let (lv, ho, v) = (
                keys.levels(sku),
                keys.holds(sku),
                keys.sku_void(sku, &record.token),
            );
            let args = &args;
            async move {
                self.eval(conn, &self.inner.scripts.unhold, &[&lv, &ho, &v], args)
                    .await
            }
        });
        // The capacity given back is that of the lines named, worked out from the record, not
        // from what this call's unholds happened to return: a unhold that ran for an earlier
        // call cut off after it (or for a sweep) returns nothing now, yet its capacity must
        // still come back. The script gives each line back once, so calls that finish the same
        // release, or release other lines at the same time, never give or keep too much.
        let day = record.body.capacity_day;
        let (used, orders, v) = (
            keys.capacity_used(day),
            keys.capacity_orders(day),
            keys.capacity_void(day, &record.token),
        );
        let whole = record
            .allocations
            .iter()
            .all(|a| line_ids.is_empty() || line_ids.contains(&a.line_id));
        let mut give = vec![
            order_id.to_owned(),
            record.token.clone(),
            "0".to_owned(),
            if whole { "1" } else { "0" }.to_owned(),
        ];
        for ((line, node), kept) in capacity_kept(&record.allocations, line_ids) {
            give.extend([line, node, kept.to_string()]);
        }
        let capacity_keys = [used.as_str(), orders.as_str(), v.as_str()];
        let capacity = self.eval(
            conn,
            &self.inner.scripts.capacity_give,
            &capacity_keys,
            &give,
        );
        let (unholds, capacity) = join(try_join_all(unholds), capacity).await;
        unholds?;
        capacity?;
        let mut args = vec![record.token.clone(), self.retention_ms().to_string()];
        args.extend(line_ids.iter().cloned());
        let key = keys.record(order_id);
        let reply = self
            .eval(conn, &self.inner.scripts.record_release, &[&key], &args)
            .await?;
        let (_, record) = coded_record(reply)?;
        let record = record.ok_or_else(|| StoreError::NotFound(order_id.to_owned()))?;
        let member = member(&record.token, order_id);
        let filed = if record.state == "held" {
            self.zadd(conn, record.expires_at, &member).await
        } else {
            self.zrem(conn, &member).await
        };
        if let Err(e) = filed {
            debug!(order_id, error = %e, "expiry entry left for the sweep");
        }
        Ok(record)
    }

    /// Confirms an attempt's holds of these skus: their units stop being pending (idempotent).
    async fn confirm(
        &self,
        conn: &Conn,
        order_id: &str,
        token: &str,
        skus: &[String],
    ) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let args = [order_id.to_owned(), token.to_owned()];
        let calls = skus.iter().map(|sku| {
            let (lv, ho) = (keys.levels(sku), keys.holds(sku));
            let args = &args;
            async move {
                self.eval(conn, &self.inner.scripts.confirm, &[&lv, &ho], args)
                    .await
            }
        });
        try_join_all(calls).await.map(drop)
    }

    /// What a reserve makes of a record the order has already: the reservation, or `None`
    /// once an attempt abandoned by a replica that died is rolled back (then try again, once).
    async fn existing_outcome(
        &self,
        conn: &Conn,
        request: &HoldRequest,
        existing: Record,
        taken_over: bool,
        now: Millis,
    ) -> Result<Option<ReserveOutcome>, StoreError> {
        if existing.unfinished() {
            if !taken_over && existing.deadline.min(existing.expires_at) <= now {
                self.settle_attempt(conn, &request.order_id, &existing.token, now)
                    .await?;
                return Ok(None);
            }
            return Err(StoreError::InFlight(request.order_id.clone()));
        }
        let record = self
            .current_record(conn, &request.order_id, now)
            .await?
            .ok_or_else(|| corrupt("a reservation record that went away"))?;
        Ok(Some(ReserveOutcome::Existing(record.reservation()?)))
    }

    /// The reservation a reserve made: held, or expired already if its TTL was shorter than
    /// the clock's step (then its stock is back at once).
    async fn created(
        &self,
        conn: &Conn,
        request: HoldRequest,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        if request.expires_at <= now {
            let record = self
                .current_record(conn, &request.order_id, now)
                .await?
                .ok_or_else(|| corrupt("a reservation record that went away"))?;
            return Ok(ReserveOutcome::Created(record.reservation()?));
        }
        Ok(ReserveOutcome::Created(Reservation {
            order_id: request.order_id,
            fingerprint: request.fingerprint,
            segment: request.segment,
            state: ReservationState::Held,
            plan: request.plan,
            allocations: request.allocations,
            created_at: now,
            expires_at: Some(request.expires_at),
            capacity_day: request.capacity_day,
        }))
    }

    /// A reserve on a single Redis: one script does it all, atomically.
    async fn reserve_whole(
        &self,
        conn: &Conn,
        request: HoldRequest,
        token: &str,
        member: &str,
        create_args: &[String; 6],
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        let keys = &self.inner.keys;
        let day = request.capacity_day;
        let mut by_sku: BTreeMap<&str, Vec<&Allocation>> = BTreeMap::new();
        for a in &request.allocations {
            by_sku.entry(&a.sku).or_default().push(a);
        }
        let per_line = capacity_entries(&request.allocations);
        let mut key_list = vec![
            keys.record(&request.order_id),
            keys.expiry(),
            keys.capacity_used(day),
            keys.capacity_orders(day),
        ];
        let [_, expires_at, _, day_arg, body, allocations] = create_args;
        let mut args = vec![
            request.order_id.clone(),
            token.to_owned(),
            expires_at.clone(),
            day_arg.clone(),
            body.clone(),
            allocations.clone(),
            if request.use_safety_stock { "1" } else { "0" }.to_owned(),
            ((day + 2) * MILLIS_PER_DAY - now)
                .max(request.expires_at - now)
                .max(1)
                .to_string(),
            member.to_owned(),
            per_line.len().to_string(),
        ];
        for ((node, line), units) in &per_line {
            args.extend([node.to_string(), units.to_string(), line.to_string()]);
        }
        args.push(request.capacity_limits.len().to_string());
        for (node, limit) in &request.capacity_limits {
            args.extend([node.clone(), limit.to_string()]);
        }
        let skus: Vec<&str> = by_sku.keys().copied().collect();
        for (sku, allocations) in &by_sku {
            key_list.extend([keys.levels(sku), keys.holds(sku)]);
            args.push(allocations.len().to_string());
            for a in allocations {
                args.extend([a.line_id.clone(), a.node_id.clone(), a.quantity.to_string()]);
            }
        }
        let refs: Vec<&str> = key_list.iter().map(String::as_str).collect();
        let mut taken_over = false;
        loop {
            let reply = self
                .eval(conn, &self.inner.scripts.reserve_whole, &refs, &args)
                .await?;
            let (code, existing) = coded_record(reply.clone())?;
            let values = items(reply);
            let number = |i: usize| values.get(i).and_then(int).unwrap_or(0).max(0) as u64;
            return match code.as_str() {
                "created" => self.created(conn, request, now).await,
                "short" => Ok(ReserveOutcome::Insufficient {
                    sku: skus
                        .get((number(1) as usize).saturating_sub(1))
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    node_id: values.get(2).and_then(text).unwrap_or_default(),
                    wanted: number(3),
                    available: number(4),
                }),
                "over" => Ok(ReserveOutcome::OverCapacity {
                    node_id: values.get(1).and_then(text).unwrap_or_default(),
                    wanted: number(2),
                    available: number(3),
                }),
                "corrupt" => Err(unreadable_level(
                    skus.get((number(1) as usize).saturating_sub(1))
                        .copied()
                        .unwrap_or_default(),
                    &values.get(2).and_then(text).unwrap_or_default(),
                    &values.get(3).and_then(text).unwrap_or_default(),
                )),
                "exists" => {
                    let existing =
                        existing.ok_or_else(|| corrupt("an existing record without fields"))?;
                    match self
                        .existing_outcome(conn, &request, existing, taken_over, now)
                        .await?
                    {
                        Some(outcome) => Ok(outcome),
                        None => {
                            taken_over = true;
                            continue;
                        }
                    }
                }
                other => Err(corrupt(format!("a reserve script code {other:?}"))),
            };
        }
    }

    /// One sku's hold for an attempt.
    async fn hold_sku(
        &self,
        conn: &Conn,
        request: &HoldRequest,
        token: &str,
        sku: &str,
    ) -> Result<Value, StoreError> {
        let keys = &self.inner.keys;
        let (lv, ho, v) = (keys.levels(sku), keys.holds(sku), keys.sku_void(sku, token));
        let use_safety = if request.use_safety_stock { "1" } else { "0" };
        let mut args = vec![
            request.order_id.clone(),
            token.to_owned(),
            use_safety.to_owned(),
        ];
        for a in request.allocations.iter().filter(|a| a.sku == sku) {
            args.extend([a.line_id.clone(), a.node_id.clone(), a.quantity.to_string()]);
        }
        self.eval(conn, &self.inner.scripts.hold, &[&lv, &ho, &v], &args)
            .await
    }

    /// The day's node capacity for an attempt.
    async fn take_capacity(
        &self,
        conn: &Conn,
        request: &HoldRequest,
        token: &str,
        now: Millis,
    ) -> Result<Value, StoreError> {
        let per_line = capacity_entries(&request.allocations);
        if per_line.is_empty() {
            return Ok(Value::Array(vec![Value::SimpleString("ok".into())]));
        }
        let keys = &self.inner.keys;
        let day = request.capacity_day;
        let (used, orders, v) = (
            keys.capacity_used(day),
            keys.capacity_orders(day),
            keys.capacity_void(day, token),
        );
        let mut args = vec![
            request.order_id.clone(),
            token.to_owned(),
            // the day's counters outlive the day by a day, then go
            ((day + 2) * MILLIS_PER_DAY - now)
                .max(request.expires_at - now)
                .max(1)
                .to_string(),
            per_line.len().to_string(),
        ];
        for ((node, line), units) in &per_line {
            args.extend([node.to_string(), units.to_string(), line.to_string()]);
        }
        for (node, limit) in &request.capacity_limits {
            args.extend([node.clone(), limit.to_string()]);
        }
        self.eval(
            conn,
            &self.inner.scripts.capacity_take,
            &[&used, &orders, &v],
            &args,
        )
        .await
    }

    /// Holds every sku and the day's capacity for an attempt whose record is written; `None`
    /// when all is held, else why not (the caller gives back what was held).
    ///
    /// All skus are tried at once. A sku whose units are held only by other attempts still in
    /// flight is "busy": then the skus after it (in sku order) are given back and it and the
    /// rest are held one at a time, waiting on each while it is busy. Holding only skus below
    /// the one waited on means no two attempts ever wait on each other, and waiting means an
    /// order is refused only for units that stay held, as if the attempts had run one by one.
    async fn hold_all(
        &self,
        conn: &Conn,
        request: &HoldRequest,
        token: &str,
        skus: &[String],
        now: Millis,
    ) -> Result<Option<ReserveOutcome>, StoreError> {
        let holds = skus
            .iter()
            .map(|sku| self.hold_sku(conn, request, token, sku));
        let (holds, capacity) = join(
            join_all(holds),
            self.take_capacity(conn, request, token, now),
        )
        .await;
        let mut busy_from = None;
        for (i, reply) in holds.into_iter().enumerate() {
            match self.hold_verdict(request, &skus[i], reply?)? {
                Verdict::Held => {}
                Verdict::Busy(_) => {
                    busy_from.get_or_insert(i);
                }
                Verdict::Refused(outcome) => return Ok(Some(outcome)),
            }
        }
        match self.hold_verdict(request, "", capacity?)? {
            Verdict::Held => {}
            Verdict::Busy(outcome) | Verdict::Refused(outcome) => return Ok(Some(outcome)),
        }
        let Some(first) = busy_from else {
            return Ok(None);
        };
        let later = &skus[first + 1..];
        if !later.is_empty() {
            let args = vec![request.order_id.clone(), token.to_owned(), "0".to_owned()];
            let gives = later.iter().map(|sku| {
                let keys = &self.inner.keys;
                let (lv, ho, v) = (keys.levels(sku), keys.holds(sku), keys.sku_void(sku, token));
                let args = &args;
                async move {
                    self.eval(conn, &self.inner.scripts.unhold, &[&lv, &ho, &v], args)
                        .await
                }
            });
            try_join_all(gives).await?;
        }
        let waited = Instant::now();
        for sku in &skus[first..] {
            let mut pause = Duration::from_micros(200);
            loop {
                let reply = self.hold_sku(conn, request, token, sku).await?;
                match self.hold_verdict(request, sku, reply)? {
                    Verdict::Held => break,
                    Verdict::Refused(outcome) => return Ok(Some(outcome)),
                    Verdict::Busy(outcome) => {
                        if waited.elapsed() > BUSY_WAIT {
                            return Ok(Some(outcome));
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(5));
                    }
                }
            }
        }
        Ok(None)
    }

    /// One try at a reserve: on a single Redis one script, on a cluster in steps (see the
    /// module docs).
    async fn reserve_once(
        &self,
        conn: &Conn,
        request: HoldRequest,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        let keys = &self.inner.keys;
        let record_key = keys.record(&request.order_id);
        let token = attempt_token();
        let member = member(&token, &request.order_id);
        let deadline = now + self.inner.settings.pending_timeout_ms as i64;
        let body = serde_json::to_string(&Body {
            order_id: request.order_id.clone(),
            fingerprint: request.fingerprint.clone(),
            segment: request.segment.clone(),
            plan: request.plan.clone(),
            created_at: now,
            capacity_day: request.capacity_day,
        })
        .map_err(|e| corrupt(format!("a reservation body: {e}")))?;
        let allocations = serde_json::to_string(&request.allocations)
            .map_err(|e| corrupt(format!("reservation allocations: {e}")))?;
        let create_args = [
            token.clone(),
            request.expires_at.to_string(),
            deadline.to_string(),
            request.capacity_day.to_string(),
            body,
            allocations,
        ];
        if !self.inner.settings.cluster {
            return self
                .reserve_whole(conn, request, &token, &member, &create_args, now)
                .await;
        }
        // (1) the record, pending, and its place in the expiry set; either may land first
        let mut taken_over = false;
        loop {
            let (created, filed) = join(
                self.eval(
                    conn,
                    &self.inner.scripts.record_create,
                    &[&record_key],
                    &create_args,
                ),
                self.zadd(conn, deadline.min(request.expires_at), &member),
            )
            .await;
            filed?;
            let (code, existing) = coded_record(created?)?;
            if code == "created" {
                break;
            }
            self.zrem(conn, &member).await?;
            let existing = existing.ok_or_else(|| corrupt("an existing record without fields"))?;
            match self
                .existing_outcome(conn, &request, existing, taken_over, now)
                .await?
            {
                Some(outcome) => return Ok(outcome),
                None => taken_over = true,
            }
        }
        // (2) every sku and the capacity; (3) the record becomes held
        let skus = distinct_skus(&request.allocations);
        let held = self.hold_all(conn, &request, &token, &skus, now).await;
        let finished = match &held {
            Ok(None) => {
                // The units stop being pending as the record becomes held. Confirming is only a
                // hint to other attempts (whether to wait), so it may run alongside: if the
                // record cannot be finished, the rollback gives the units back either way.
                let confirms = self.confirm(conn, &request.order_id, &token, &skus);
                // The expiry set keeps the attempt's deadline: most holds are committed before
                // it comes, and a sweep files the rest by their expiry then.
                let (finish, confirmed) = join(
                    self.eval(
                        conn,
                        &self.inner.scripts.record_finish,
                        &[&record_key],
                        std::slice::from_ref(&token),
                    ),
                    confirms,
                )
                .await;
                if let Err(e) = confirmed {
                    warn!(order_id = %request.order_id, error = %e, "holds left pending");
                }
                int(&finish?) == Some(1)
            }
            _ => false,
        };
        if finished {
            return self.created(conn, request, now).await;
        }
        // Not held: give back whatever this attempt holds, then forget it. If this fails too,
        // the attempt's deadline brings a sweep to do it.
        let rollback = async {
            self.undo(
                conn,
                &request.order_id,
                &token,
                &skus,
                request.capacity_day,
                false,
            )
            .await?;
            self.eval(
                conn,
                &self.inner.scripts.record_delete,
                &[&record_key],
                std::slice::from_ref(&token),
            )
            .await?;
            self.zrem(conn, &member).await
        };
        if let Err(e) = rollback.await {
            warn!(order_id = %request.order_id, error = %e, "rollback failed; the sweep will finish it");
        }
        match held {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => Err(StoreError::Unavailable(format!(
                "the reservation of order {:?} took longer than store.redis.pending_timeout_ms and was rolled back",
                request.order_id
            ))),
            Err(e) => Err(e),
        }
    }

    /// A hold of more units of a sku at a node than any level can have: insufficient, unless
    /// the order is known already.
    async fn oversized(
        &self,
        conn: &Conn,
        request: HoldRequest,
        sku: String,
        node_id: String,
        wanted: u64,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        if let Some(record) = self.current_record(conn, &request.order_id, now).await?
            && !record.unfinished()
        {
            return Ok(ReserveOutcome::Existing(record.reservation()?));
        }
        let (stock, _) = self
            .read_at(conn, std::slice::from_ref(&sku), None, now)
            .await?;
        let available = stock
            .get(&sku)
            .and_then(|m| m.get(&node_id))
            .map(|l| l.ats(request.use_safety_stock))
            .unwrap_or(0);
        Ok(ReserveOutcome::Insufficient {
            sku,
            node_id,
            wanted,
            available,
        })
    }

    /// Settles what is due by `now` before a refused reserve tries again, within the
    /// operation timeout: whether it is worth trying again (something was due). No entry is
    /// taken up after half the timeout, and the sweep is cut off at the timeout; an entry cut
    /// off half-way stays claimed until its lease lapses, then any sweeper settles it (every
    /// step is idempotent). Entries another sweeper has claimed are not waited for: one stuck
    /// behind a stalled master would hold up every refused reserve until its claim lapsed.
    async fn sweep_for_reserve(&self, conn: &Conn, now: Millis) -> bool {
        let limit = self.op_timeout();
        let budget = Instant::now() + limit / 2;
        let sweep = self.sweep_rounds(conn, now, RESERVE_SWEEP_BATCH, Some(budget));
        match tokio::time::timeout(limit, sweep).await {
            Ok(Ok(report)) => report.settled > 0 || report.in_flight > 0,
            Ok(Err(e)) => {
                debug!(error = %e, "sweep before a retry failed");
                false
            }
            Err(_) => {
                debug!("sweep before a retry cut off at the operation timeout");
                true
            }
        }
    }

    /// Claims and settles what is due by `now`; see [`StockStore::expire_holds`].
    async fn sweep(&self, conn: &Conn, now: Millis) -> Result<SweepReport, StoreError> {
        self.sweep_rounds(conn, now, SWEEP_BATCH, None).await
    }

    /// Claims and settles what is due by `now`, up to `batch` entries a round, until nothing
    /// is left or (when given) `budget` has passed: no entry is claimed after it. Each entry is
    /// settled as soon as this sweeper has claimed it, so a claim or settle that fails leaves
    /// no other entry claimed but unsettled; the one that failed is taken over by another
    /// sweeper once its claim lapses.
    async fn sweep_rounds(
        &self,
        conn: &Conn,
        now: Millis,
        batch: isize,
        budget: Option<Instant>,
    ) -> Result<SweepReport, StoreError> {
        enum Entry {
            /// Settled by this sweeper; whether it expired a hold.
            Settled(bool),
            /// Claimed by another sweeper.
            Claimed,
            /// Left for later: the budget had passed.
            Left,
        }
        let mut report = SweepReport::default();
        let lease = (self.inner.settings.op_timeout_ms * CLAIM_OPS).max(100);
        // bounded: every entry settled is removed or filed later than `now`, and a round
        // that settles nothing ends the sweep
        for _ in 0..64 {
            if budget.is_some_and(|b| Instant::now() >= b) {
                break;
            }
            let due = self.due_entries(conn, now, batch).await?;
            let round = due.len();
            let outcomes: Vec<Result<Entry, StoreError>> = stream::iter(due)
                .map(|(m, at): (String, String)| async move {
                    if budget.is_some_and(|b| Instant::now() >= b) {
                        return Ok(Entry::Left);
                    }
                    let mut set = redis::cmd("SET");
                    set.arg(self.inner.keys.claim(&m, &at))
                        .arg("1")
                        .arg("NX")
                        .arg("PX")
                        .arg(lease);
                    let claimed: Option<String> = self.query(conn, &set).await?;
                    if claimed.is_none() {
                        return Ok(Entry::Claimed);
                    }
                    let expired = match split_member(&m) {
                        Some((token, order_id)) => {
                            self.settle_attempt(conn, order_id, token, now).await?
                        }
                        None => {
                            self.zrem(conn, &m).await?;
                            false
                        }
                    };
                    Ok(Entry::Settled(expired))
                })
                .buffer_unordered(SWEEP_CONCURRENCY)
                .collect()
                .await;
            let mut settled_any = false;
            let mut failed = None;
            for outcome in outcomes {
                match outcome {
                    Ok(Entry::Settled(expired)) => {
                        settled_any = true;
                        report.settled += 1;
                        report.expired += u64::from(expired);
                    }
                    Ok(Entry::Claimed) => report.in_flight += 1,
                    Ok(Entry::Left) => {}
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if (round as isize) < batch || !settled_any {
                break;
            }
        }
        Ok(report)
    }

    /// What a hold or capacity script said.
    fn hold_verdict(
        &self,
        request: &HoldRequest,
        sku: &str,
        reply: Value,
    ) -> Result<Verdict, StoreError> {
        let values = items(reply);
        let code = values.first().and_then(text).unwrap_or_default();
        let number = |i: usize| values.get(i).and_then(int).unwrap_or(0).max(0) as u64;
        let node_id = values.get(1).and_then(text).unwrap_or_default();
        let short = || ReserveOutcome::Insufficient {
            sku: sku.to_owned(),
            node_id: node_id.clone(),
            wanted: number(2),
            available: number(3),
        };
        Ok(match code.as_str() {
            "ok" => Verdict::Held,
            "busy" => Verdict::Busy(short()),
            "short" => Verdict::Refused(short()),
            "over" => Verdict::Refused(ReserveOutcome::OverCapacity {
                node_id: node_id.clone(),
                wanted: number(2),
                available: number(3),
            }),
            "corrupt" => {
                let stored = values.get(2).and_then(text).unwrap_or_default();
                return Err(unreadable_level(sku, &node_id, &stored));
            }
            "void" => {
                return Err(StoreError::Unavailable(format!(
                    "the reservation of order {:?} took too long and was rolled back",
                    request.order_id
                )));
            }
            other => {
                return Err(corrupt(format!(
                    "order {:?} is held by another attempt ({other})",
                    request.order_id
                )));
            }
        })
    }
}

/// An order's capacity as the day's by-order hash keeps it: units per (node, line).
fn capacity_entries(allocations: &[Allocation]) -> BTreeMap<(&str, &str), u64> {
    let mut entries: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for a in allocations {
        let units = entries.entry((&a.node_id, &a.line_id)).or_default();
        *units = units.saturating_add(a.quantity);
    }
    entries
}

/// Units of capacity each of the named lines (all if none are named) keeps at each of its
/// nodes once given back, by (line, node): its shipped units (the node did that work).
fn capacity_kept(
    allocations: &[Allocation],
    line_ids: &[String],
) -> BTreeMap<(String, String), u64> {
    let mut kept: BTreeMap<(String, String), u64> = BTreeMap::new();
    for a in allocations {
        if line_ids.is_empty() || line_ids.contains(&a.line_id) {
            let total = kept
                .entry((a.line_id.clone(), a.node_id.clone()))
                .or_default();
            *total = total.saturating_add(a.shipped.min(a.quantity));
        }
    }
    kept
}

/// What the feed script said of one update.
fn feed_result(u: &StockUpdate, code: Value) -> Result<UpdateResult, StoreError> {
    if let Some(code) = int(&code) {
        return match code {
            1 => Ok(UpdateResult::Applied),
            0 => Ok(UpdateResult::Stale),
            other => Err(corrupt(format!("a feed script code {other}"))),
        };
    }
    let values = items(code);
    let word = values.first().and_then(text).unwrap_or_default();
    let on_hand = || {
        values
            .get(1)
            .and_then(int)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| corrupt("a feed script refusal without on hand"))
    };
    let change = match u.kind {
        UpdateKind::Delta { change } => Some(change),
        _ => None,
    };
    Ok(UpdateResult::Rejected(match (word.as_str(), change) {
        ("below", Some(change)) => super::delta_below_zero(u, change, on_hand()?),
        ("above", Some(change)) => super::delta_above_limit(u, change, on_hand()?),
        ("corrupt", _) => {
            unreadable_level_update(u, &values.get(1).and_then(text).unwrap_or_default())
        }
        ("bad", _) => super::update_out_of_bounds(&u.kind)
            .unwrap_or_else(|| "quantity: a figure out of bounds".to_owned()),
        (other, _) => return Err(corrupt(format!("a feed script code {other:?}"))),
    }))
}

/// The rejection of a delta or shipment of a level that cannot be read.
fn unreadable_level_update(u: &StockUpdate, stored: &str) -> String {
    format!(
        "the stock level of {} at {} cannot be read ({}); a snapshot of that node and sku repairs it",
        u.sku,
        u.node_id,
        super::shown(stored)
    )
}

/// The error of a level that cannot be read.
fn unreadable_level(sku: &str, node: &str, stored: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "the stock level of sku {sku:?} at node {} cannot be read ({}); a feed snapshot of that node and sku repairs it",
        super::shown(node),
        super::shown(stored)
    ))
}

/// One figure of a stored level: a decimal without leading zeros, up to `max`.
fn stored_figure(part: &str, max: u64) -> Option<u64> {
    if part.is_empty() || (part.len() > 1 && part.starts_with('0')) {
        return None;
    }
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse::<u64>().ok().filter(|n| *n <= max)
}

/// One level as stored: "on hand,reserved,safety,sequence,pending".
fn parse_level(packed: &str) -> Option<StockLevel> {
    let parts: Vec<&str> = packed.split(',').collect();
    let [on_hand, reserved, safety, sequence, pending] = parts[..] else {
        return None;
    };
    // the fifth part, units of attempts in flight, is counted in reserved already
    stored_figure(pending, MAX_STOCK_UNITS)?;
    Some(StockLevel {
        on_hand: stored_figure(on_hand, MAX_STOCK_UNITS)?,
        reserved: stored_figure(reserved, MAX_STOCK_UNITS)?,
        safety_stock: stored_figure(safety, MAX_STOCK_UNITS)?,
        last_sequence: stored_figure(sequence, u64::MAX)?,
    })
}

/// Levels from a sku's hash: node → "on hand,reserved,safety,sequence,pending".
fn parse_levels(
    sku: &str,
    fields: &[(String, String)],
) -> Result<HashMap<String, StockLevel>, StoreError> {
    fields
        .iter()
        .map(|(node, packed)| match parse_level(packed) {
            Some(level) => Ok((node.clone(), level)),
            None => Err(unreadable_level(sku, node, packed)),
        })
        .collect()
}

#[async_trait]
impl StockStore for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        let pong: String = self.query(&conn, &redis::cmd("PING")).await?;
        if pong != "PONG" {
            return Err(StoreError::Unavailable(format!(
                "Redis answered PING with {pong:?}"
            )));
        }
        self.check_markers(&conn).await
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
        let mut results: Vec<Option<UpdateResult>> = vec![None; updates.len()];
        // A sku with a shipment in the batch goes one update at a time, in order, so that its
        // sequences apply as sent; every other sku goes in batches by slot.
        let shipped: std::collections::HashSet<&str> = updates
            .iter()
            .filter(|u| matches!(u.kind, UpdateKind::Shipment { .. }))
            .map(|u| u.sku.as_str())
            .collect();
        let mut batches: BTreeMap<u16, Vec<(usize, &StockUpdate)>> = BTreeMap::new();
        let mut one_by_one: BTreeMap<&str, Vec<(usize, &StockUpdate)>> = BTreeMap::new();
        for (i, u) in updates.iter().enumerate() {
            if let Some(why) = super::update_out_of_bounds(&u.kind) {
                results[i] = Some(UpdateResult::Rejected(why));
            } else if shipped.contains(u.sku.as_str()) {
                one_by_one.entry(&u.sku).or_default().push((i, u));
            } else {
                let group = self.group(&self.inner.keys.levels(&u.sku));
                batches.entry(group).or_default().push((i, u));
            }
        }
        let batch_calls = batches
            .values()
            .flat_map(|batch| batch.chunks(FEED_CHUNK))
            .map(|chunk| {
                let conn = &conn;
                async move {
                    let mut part = vec![None; updates.len()];
                    self.apply_levels(conn, chunk, &mut part).await?;
                    Ok::<_, StoreError>(part)
                }
            });
        let sku_calls = one_by_one.values().map(|list| {
            let conn = &conn;
            async move {
                let mut part = vec![None; updates.len()];
                for (i, u) in list {
                    part[*i] = Some(match &u.kind {
                        UpdateKind::Shipment { order_id, quantity } => {
                            self.apply_shipment(conn, u, order_id, *quantity, now)
                                .await?
                        }
                        _ => {
                            let mut one = vec![None; updates.len()];
                            self.apply_levels(conn, &[(*i, *u)], &mut one).await?;
                            one[*i]
                                .take()
                                .ok_or_else(|| corrupt("a feed script without an answer"))?
                        }
                    });
                }
                Ok::<_, StoreError>(part)
            }
        });
        let (batched, singles) = join(try_join_all(batch_calls), try_join_all(sku_calls)).await;
        for part in batched?.into_iter().chain(singles?) {
            for (slot, result) in results.iter_mut().zip(part) {
                if result.is_some() {
                    *slot = result;
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| corrupt("an update without a result")))
            .collect()
    }

    async fn reserve(
        &self,
        request: HoldRequest,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        let conn = self.conn().await?;
        if let Some((sku, node_id, wanted)) = super::oversized_hold(&request.allocations) {
            return self
                .oversized(&conn, request, sku, node_id, wanted, now)
                .await;
        }
        let outcome = self.reserve_once(&conn, request.clone(), now).await?;
        if !matches!(
            outcome,
            ReserveOutcome::Insufficient { .. } | ReserveOutcome::OverCapacity { .. }
        ) {
            return Ok(outcome);
        }
        // Reads leave out the units of holds past their expiry without giving them back, so
        // the plan may count on units a sweep has yet to return: return what is due, then try
        // once more.
        if !self.sweep_for_reserve(&conn, now).await {
            return Ok(outcome);
        }
        self.reserve_once(&conn, request, now).await
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

    async fn commit(&self, order_id: &str, now: Millis) -> Result<Reservation, StoreError> {
        let conn = self.conn().await?;
        let key = self.inner.keys.record(order_id);
        let reply = self
            .eval(
                &conn,
                &self.inner.scripts.record_commit,
                &[&key],
                &[now.to_string(), self.retention_ms().to_string()],
            )
            .await?;
        let (code, record) = coded_record(reply)?;
        let Some(record) = record else {
            return Err(StoreError::NotFound(order_id.to_owned()));
        };
        match code.as_str() {
            // "ok" on a committed record: a commit again, maybe after one cut off before this
            "committed" | "ok" if record.state == "committed" => {
                // On a cluster the units are confirmed, in case the replica that reserved them
                // died (or was cut off) before it did; only then may the expiry set forget the
                // order, since its entry is what brings a sweep to confirm them otherwise. A
                // failure to forget it only leaves the sweep a little more to look at.
                if self.inner.settings.cluster {
                    self.confirm(&conn, order_id, &record.token, &record.skus())
                        .await?;
                }
                if let Err(e) = self.zrem(&conn, &member(&record.token, order_id)).await {
                    debug!(order_id, error = %e, "expiry entry left for the sweep");
                }
                return record.reservation();
            }
            "expired" => {
                self.settle_attempt(&conn, order_id, &record.token, now)
                    .await?;
                return Err(StoreError::InvalidState {
                    order_id: order_id.to_owned(),
                    state: ReservationState::Expired,
                    action: "committed",
                });
            }
            _ => {}
        }
        if record.unfinished() {
            return Err(StoreError::InFlight(order_id.to_owned()));
        }
        let reservation = record.reservation()?;
        match reservation.state {
            ReservationState::Held | ReservationState::Committed | ReservationState::Fulfilled => {
                Ok(reservation)
            }
            state @ (ReservationState::Released | ReservationState::Expired) => {
                Err(StoreError::InvalidState {
                    order_id: order_id.to_owned(),
                    state,
                    action: "committed",
                })
            }
        }
    }

    async fn release(
        &self,
        order_id: &str,
        line_ids: &[String],
        now: Millis,
    ) -> Result<Reservation, StoreError> {
        let conn = self.conn().await?;
        let Some(record) = self.current_record(&conn, order_id, now).await? else {
            return Err(StoreError::NotFound(order_id.to_owned()));
        };
        if record.unfinished() {
            return Err(StoreError::InFlight(order_id.to_owned()));
        }
        if let Some(unknown) = line_ids.iter().find(|id| {
            !record.allocations.iter().any(|a| &a.line_id == *id)
                && !record.body.plan.unfilled.iter().any(|u| &u.line_id == *id)
        }) {
            return Err(StoreError::UnknownLine {
                order_id: order_id.to_owned(),
                line_id: unknown.clone(),
            });
        }
        if !matches!(record.state.as_str(), "held" | "committed") {
            return record.reservation();
        }
        // a release cut off earlier goes first, so that its lines are not forgotten
        let record = match &record.releasing {
            Some((lines, _)) => {
                self.complete_release(&conn, order_id, &record, lines)
                    .await?
            }
            None => record,
        };
        if !matches!(record.state.as_str(), "held" | "committed") {
            return record.reservation();
        }
        // The record first says which lines are being given back, and the order is filed in the
        // expiry set by a deadline: if this call stops half-way, any replica's sweep finishes
        // the release from the record then.
        let member = member(&record.token, order_id);
        let deadline = now + self.inner.settings.pending_timeout_ms as i64;
        self.zadd(&conn, deadline, &member).await?;
        let lines = serde_json::to_string(line_ids).map_err(|e| corrupt(e.to_string()))?;
        let key = self.inner.keys.record(order_id);
        let reply = self
            .eval(
                &conn,
                &self.inner.scripts.record_release_begin,
                &[&key],
                &[record.token.clone(), lines, deadline.to_string()],
            )
            .await?;
        let (code, record) = coded_record(reply)?;
        let record = record.ok_or_else(|| StoreError::NotFound(order_id.to_owned()))?;
        if code != "ok" {
            return record.reservation();
        }
        // Releases begun at the same time add their lines to the record's: this call finishes
        // what the record notes now (its own lines among them), so that a release cut off after
        // giving back its stock is finished by any other, and nothing is given back twice.
        let noted = match &record.releasing {
            Some((lines, _)) => lines.clone(),
            None => line_ids.to_vec(),
        };
        self.complete_release(&conn, order_id, &record, &noted)
            .await?
            .reservation()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_spec() {
        // values from the Redis Cluster specification and `CLUSTER KEYSLOT`
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_ne!(slot("foo{}{bar}"), slot("bar"));
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
    }

    #[test]
    fn keys_of_one_sku_share_a_slot() {
        let keys = Keys::new("dom");
        let s = slot(&keys.levels("SKU-1"));
        assert_eq!(slot(&keys.holds("SKU-1")), s);
        assert_eq!(slot(&keys.sku_void("SKU-1", "0123456789abcdef")), s);
        assert_eq!(slot(&keys.capacity_used(3)), slot(&keys.capacity_orders(3)));
        let buckets: std::collections::BTreeSet<u16> =
            keys.markers.iter().map(|k| slot(k) / 1024).collect();
        assert_eq!(buckets.len(), usize::from(MARKERS));
    }

    #[test]
    fn members_name_their_attempt_and_order() {
        let token = attempt_token();
        assert_eq!(token.len(), 16);
        assert_ne!(token, attempt_token());
        let m = member(&token, "order:with:colons");
        assert_eq!(
            split_member(&m),
            Some((token.as_str(), "order:with:colons"))
        );
        assert_eq!(split_member("short"), None);
    }
}
