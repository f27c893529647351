//! What changed, as one ordered log that every replica reads: reservations created, committed,
//! released, expired and fulfilled, and stock levels changed by the feed. Each store writes an
//! event in the same atomic step as the change it reports, so no crash can separate them (the
//! memory store under its lock, Redis inside the script that makes the change); watchers read
//! the log from a cursor and then follow it live.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::clock::Millis;
use crate::store::{Allocation, ReservationState, StockLevel};

pub mod alerts;

/// Where an event stands in the log: the time it was appended (ms) and its number within that
/// millisecond, written `ms-seq` as Redis Stream ids are. Later events have larger ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId {
    pub ms: u64,
    pub seq: u64,
}

impl EventId {
    pub const ZERO: EventId = EventId { ms: 0, seq: 0 };

    /// The id right after this one: a stream's entries after it all have at least this id.
    pub fn next(self) -> EventId {
        match self.seq.checked_add(1) {
            Some(seq) => EventId { ms: self.ms, seq },
            None => EventId {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EventId {
    type Err = String;

    /// `ms-seq`, two decimal numbers; anything else is refused with what was expected.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{} is not an event id (two numbers, ms-seq)",
                crate::store::shown(s)
            )
        };
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let number = |t: &str| -> Result<u64, String> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        Ok(EventId {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    ReservationCreated,
    ReservationCommitted,
    /// Lines (or all) of a reservation given back by a release.
    ReservationReleased,
    ReservationExpired,
    /// Every unit of the reservation shipped or given back, some shipped.
    ReservationFulfilled,
    /// A node could not ship units it was given; they went to another node, or wait, or were
    /// cancelled (the reservation after it; `lines` the lines moved).
    ReservationRerouted,
    /// Units of a reservation were dropped: no node could ship them after a reroute, or they
    /// waited longer than the segment's `backorder_max_days`.
    UnitsCancelled,
    /// Units of a reservation that waited for supply are held now (the reservation after it;
    /// `lines` the lines filled).
    BackorderFilled,
    /// A feed update changed a level: the level after it.
    StockChanged,
    /// A node's ATS, or the network's as a segment sees it, fell to or below its threshold.
    LowStock,
    /// ... and rose back above the threshold plus the hysteresis.
    StockRecovered,
    /// The network's ATS of a sku as a segment sees it fell to 0.
    OutOfStock,
    /// ... and rose above 0 again.
    BackInStock,
}

impl EventKind {
    pub const ALL: [EventKind; 13] = [
        EventKind::ReservationCreated,
        EventKind::ReservationCommitted,
        EventKind::ReservationReleased,
        EventKind::ReservationExpired,
        EventKind::ReservationFulfilled,
        EventKind::ReservationRerouted,
        EventKind::UnitsCancelled,
        EventKind::BackorderFilled,
        EventKind::StockChanged,
        EventKind::LowStock,
        EventKind::StockRecovered,
        EventKind::OutOfStock,
        EventKind::BackInStock,
    ];

    /// The name in metrics and in the Redis stream.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ReservationCreated => "created",
            EventKind::ReservationCommitted => "committed",
            EventKind::ReservationReleased => "released",
            EventKind::ReservationExpired => "expired",
            EventKind::ReservationFulfilled => "fulfilled",
            EventKind::ReservationRerouted => "rerouted",
            EventKind::UnitsCancelled => "cancelled",
            EventKind::BackorderFilled => "filled",
            EventKind::StockChanged => "stock",
            EventKind::LowStock => "low",
            EventKind::StockRecovered => "recovered",
            EventKind::OutOfStock => "out",
            EventKind::BackInStock => "back",
        }
    }

    /// Whether it is an alert (made by looking at levels, not by a change of its own).
    pub fn is_alert(self) -> bool {
        matches!(
            self,
            EventKind::LowStock
                | EventKind::StockRecovered
                | EventKind::OutOfStock
                | EventKind::BackInStock
        )
    }

    pub fn parse(code: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == code)
    }
}

/// A change to a reservation, with the reservation's allocations after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationChange {
    pub order_id: String,
    pub segment: String,
    pub state: ReservationState,
    pub allocations: Vec<Allocation>,
    /// For a release: the lines it named (none: every line).
    pub lines: Vec<String>,
}

/// A level after a feed update changed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockChange {
    pub sku: String,
    pub node_id: String,
    pub level: StockLevel,
}

/// A threshold crossed: of a node (`node_id`) or of the network as a segment sees it
/// (`segment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertChange {
    pub sku: String,
    pub node_id: String,
    pub segment: String,
    /// The ATS that crossed.
    pub ats: u64,
    /// None: the state ended because no threshold applies any more.
    pub threshold: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Reservation(ReservationChange),
    Stock(StockChange),
    Alert(AlertChange),
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    /// Stable across redeliveries of the same change (a consumer drops repeats by it).
    pub key: String,
    /// When the change was made, by the clock of the replica that made it.
    pub at: Millis,
    pub kind: EventKind,
    pub change: Change,
}

impl Event {
    /// The skus the event is about.
    pub fn skus(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match &self.change {
            Change::Stock(s) => (Some(s.sku.as_str()), None),
            Change::Alert(a) => (Some(a.sku.as_str()), None),
            Change::Reservation(r) => (None, Some(r.allocations.iter().map(|a| a.sku.as_str()))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// The nodes the event is about.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match &self.change {
            Change::Stock(s) => (Some(s.node_id.as_str()), None),
            Change::Alert(a) => ((!a.node_id.is_empty()).then_some(a.node_id.as_str()), None),
            Change::Reservation(r) => {
                (None, Some(r.allocations.iter().map(|a| a.node_id.as_str())))
            }
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    pub fn order_id(&self) -> Option<&str> {
        match &self.change {
            Change::Reservation(r) => Some(&r.order_id),
            Change::Stock(_) | Change::Alert(_) => None,
        }
    }

    pub fn segment(&self) -> Option<&str> {
        match &self.change {
            Change::Reservation(r) => Some(&r.segment),
            Change::Alert(a) if !a.segment.is_empty() => Some(&a.segment),
            Change::Stock(_) | Change::Alert(_) => None,
        }
    }
}

/// Which events a watcher wants: each list left empty lets every value through; a value in a
/// list must match. Stock changes have no order or segment, so a filter by either leaves them
/// out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub kinds: HashSet<EventKind>,
    pub skus: HashSet<String>,
    pub nodes: HashSet<String>,
    pub segments: HashSet<String>,
    pub order_ids: HashSet<String>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && (self.skus.is_empty() || e.skus().any(|s| self.skus.contains(s)))
            && (self.nodes.is_empty() || e.nodes().any(|n| self.nodes.contains(n)))
            && (self.segments.is_empty() || e.segment().is_some_and(|s| self.segments.contains(s)))
            && (self.order_ids.is_empty()
                || e.order_id().is_some_and(|o| self.order_ids.contains(o)))
    }

    /// Values named in all lists together.
    pub fn size(&self) -> usize {
        self.kinds.len()
            + self.skus.len()
            + self.nodes.len()
            + self.segments.len()
            + self.order_ids.len()
    }
}

/// How much of the log is kept: at most `max_events` entries (Redis trims to about that many),
/// none older than `max_age_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_events: usize,
    pub max_age_ms: u64,
}

impl Default for Retention {
    /// As the embedded `server.toml`: 100,000 events, a day.
    fn default() -> Self {
        Self {
            max_events: 100_000,
            max_age_ms: 86_400_000,
        }
    }
}

/// Events a watcher may fall behind the live feed by default (`events.watcher_buffer`).
pub const DEFAULT_WATCHER_BUFFER: usize = 1024;

/// A page of the log read after a cursor.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub events: Vec<Arc<Event>>,
    /// The newest id the log has given so far, when it has given any.
    pub last: Option<EventId>,
}

/// Why a cursor cannot be read from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error(
        "after: events after {after} are no longer kept (the oldest kept is {oldest}); read current stock with GetAvailability and reservations with GetReservation, then watch from now"
    )]
    Trimmed { after: EventId, oldest: String },
    #[error("after: {after} is later than the newest event ({last})")]
    Future { after: EventId, last: String },
}

/// The in-process log of the memory store: the same semantics as the Redis stream.
#[derive(Debug)]
pub struct MemoryLog {
    entries: VecDeque<Arc<Event>>,
    last: Option<EventId>,
    /// The newest id trimmed away; a cursor before it has lost events.
    trimmed: Option<EventId>,
    retention: Retention,
    live: broadcast::Sender<Arc<Event>>,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new(Retention::default(), DEFAULT_WATCHER_BUFFER)
    }
}

impl MemoryLog {
    pub fn new(retention: Retention, live_capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            last: None,
            trimmed: None,
            retention,
            live: broadcast::channel(live_capacity.max(1)).0,
        }
    }

    pub fn set_retention(&mut self, retention: Retention) {
        self.retention = retention;
    }

    /// Appends a change made at `at`; its id is the next after the last one given.
    pub fn append(&mut self, at: Millis, kind: EventKind, change: Change) {
        let at_ms = u64::try_from(at).unwrap_or(0);
        let id = match self.last {
            Some(last) if last.ms >= at_ms => last.next(),
            _ => EventId { ms: at_ms, seq: 0 },
        };
        self.last = Some(id);
        let event = Arc::new(Event {
            id,
            key: id.to_string(),
            at,
            kind,
            change,
        });
        crate::metrics::event_logged(kind);
        self.entries.push_back(event.clone());
        self.trim(at);
        // no watcher connected is fine: the log keeps it for those that come
        let _ = self.live.send(event);
    }

    /// Drops what retention no longer keeps as of `now`.
    pub fn trim(&mut self, now: Millis) {
        let horizon = u64::try_from(now)
            .unwrap_or(0)
            .saturating_sub(self.retention.max_age_ms);
        while let Some(first) = self.entries.front() {
            if self.entries.len() <= self.retention.max_events && first.id.ms >= horizon {
                break;
            }
            self.trimmed = Some(first.id);
            self.entries.pop_front();
        }
    }

    /// Up to `limit` events after `after` (or from the oldest kept, when none).
    pub fn read(&self, after: Option<EventId>, limit: usize) -> Result<Page, CursorError> {
        if let Some(after) = after {
            check_cursor(after, self.last, self.trimmed, || self.oldest())?;
        }
        let start = match after {
            Some(after) => self.entries.partition_point(|e| e.id <= after),
            None => 0,
        };
        Ok(Page {
            events: self
                .entries
                .iter()
                .skip(start)
                .take(limit)
                .cloned()
                .collect(),
            last: self.last,
        })
    }

    fn oldest(&self) -> String {
        self.entries
            .front()
            .map_or_else(|| "none".to_owned(), |e| e.id.to_string())
    }

    /// Events appended from now on, as they are appended.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether a log whose newest id is `last` and whose newest trimmed id is `trimmed` can be read
/// after `after` without a gap.
pub fn check_cursor(
    after: EventId,
    last: Option<EventId>,
    trimmed: Option<EventId>,
    oldest: impl FnOnce() -> String,
) -> Result<(), CursorError> {
    let newest = last.unwrap_or(EventId::ZERO);
    if after > newest {
        return Err(CursorError::Future {
            after,
            last: last.map_or_else(|| "none yet".to_owned(), |l| l.to_string()),
        });
    }
    if trimmed.is_some_and(|t| after < t) {
        return Err(CursorError::Trimmed {
            after,
            oldest: oldest(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stock(sku: &str, node: &str) -> Change {
        Change::Stock(StockChange {
            sku: sku.into(),
            node_id: node.into(),
            level: StockLevel::default(),
        })
    }

    #[test]
    fn ids_read_as_written_and_nothing_else() {
        let id: EventId = "1700000000000-12".parse().unwrap();
        assert_eq!(
            id,
            EventId {
                ms: 1_700_000_000_000,
                seq: 12
            }
        );
        assert_eq!(id.to_string(), "1700000000000-12");
        assert!(id < "1700000000000-13".parse().unwrap());
        assert!("1700000000001-0".parse::<EventId>().unwrap() > id);
        for bad in [
            "",
            "12",
            "1-",
            "-1",
            "a-1",
            "1-1-1",
            "+1-1",
            "1- 2",
            "99999999999999999999999-0",
        ] {
            let e = bad.parse::<EventId>().unwrap_err();
            assert!(e.contains("is not an event id"), "{bad:?}: {e}");
        }
        assert_eq!(
            EventId {
                ms: 5,
                seq: u64::MAX
            }
            .next(),
            EventId { ms: 6, seq: 0 }
        );
    }

    #[test]
    fn the_memory_log_orders_trims_and_refuses_lost_cursors() {
        let mut log = MemoryLog::new(
            Retention {
                max_events: 3,
                max_age_ms: 1000,
            },
            8,
        );
        let mut live = log.subscribe();
        // a clock that steps back never makes an earlier id
        for at in [100, 100, 90, 200] {
            log.append(at, EventKind::StockChanged, stock("A", "n1"));
        }
        let ids: Vec<String> = log
            .read(None, 10)
            .unwrap()
            .events
            .iter()
            .map(|e| e.id.to_string())
            .collect();
        assert_eq!(ids, ["100-1", "100-2", "200-0"]);
        assert_eq!(live.try_recv().unwrap().id.to_string(), "100-0");
        // the first event was dropped for the count: a cursor before it lost it
        let lost = log.read(Some(EventId::ZERO), 10).unwrap_err();
        assert!(matches!(lost, CursorError::Trimmed { .. }), "{lost}");
        assert!(
            lost.to_string().contains("the oldest kept is 100-1"),
            "{lost}"
        );
        assert_eq!(
            log.read(Some("100-0".parse().unwrap()), 10)
                .unwrap()
                .events
                .len(),
            3
        );
        assert!(matches!(
            log.read(Some("200-1".parse().unwrap()), 10),
            Err(CursorError::Future { .. })
        ));
        // age: at 1150 everything before 150 goes
        log.trim(1150);
        assert_eq!(log.len(), 1);
        assert!(log.read(Some("100-1".parse().unwrap()), 10).is_err());
        assert_eq!(
            log.read(Some("100-2".parse().unwrap()), 10)
                .unwrap()
                .events
                .len(),
            1
        );
    }

    #[test]
    fn filters_match_every_list_they_name() {
        let e = Event {
            id: EventId::ZERO,
            key: "k".into(),
            at: 0,
            kind: EventKind::StockChanged,
            change: stock("A", "n1"),
        };
        let mut f = Filter::default();
        assert!(f.matches(&e));
        f.skus.insert("A".into());
        assert!(f.matches(&e));
        f.nodes.insert("n2".into());
        assert!(!f.matches(&e));
        let by_order = Filter {
            order_ids: ["o".to_owned()].into(),
            ..Filter::default()
        };
        assert!(!by_order.matches(&e), "a stock change has no order");
        let by_kind = Filter {
            kinds: [EventKind::ReservationCreated].into(),
            ..Filter::default()
        };
        assert!(!by_kind.matches(&e));
    }
}
