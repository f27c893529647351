//! `dom.v1.Events`: the log of changes, read from a cursor and then followed live.
//!
//! A watch subscribes to the live feed first and reads the log after its cursor second, so
//! nothing appended in between is missed; whatever both give is sent once (live events at or
//! before the last id sent are skipped). Each watcher has a bounded queue towards its client;
//! one whose client reads too slowly falls behind the live feed and is ended with
//! RESOURCE_EXHAUSTED naming the id to resume after, so it never slows anyone else.

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{debug, instrument};

use super::convert;
use super::pb;
use crate::config::EventSettings;
use crate::events::{Change, Event, EventId, EventKind, Filter};
use crate::store::{StockStore, StoreError};

/// Events read from the log in one step while a watcher catches up.
const PAGE: usize = 512;
/// Events queued towards one client; past it, the watcher waits, and falls behind the live feed.
const QUEUE: usize = 64;

/// What a watch may ask for: its own part of the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchLimits {
    pub max_filter_values: usize,
}

impl From<&EventSettings> for WatchLimits {
    fn from(s: &EventSettings) -> Self {
        Self {
            max_filter_values: s.max_filter_values,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventsApi {
    store: Arc<dyn StockStore>,
    limits: WatchLimits,
    /// Turns true when the server stops: every watch ends then, so draining does not wait for
    /// streams that never end.
    stopping: watch::Receiver<bool>,
}

impl EventsApi {
    pub fn new(
        store: Arc<dyn StockStore>,
        limits: WatchLimits,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            limits,
            stopping,
        }
    }
}

fn event_kind(kind: EventKind) -> pb::EventKind {
    match kind {
        EventKind::ReservationCreated => pb::EventKind::ReservationCreated,
        EventKind::ReservationCommitted => pb::EventKind::ReservationCommitted,
        EventKind::ReservationReleased => pb::EventKind::ReservationReleased,
        EventKind::ReservationExpired => pb::EventKind::ReservationExpired,
        EventKind::ReservationFulfilled => pb::EventKind::ReservationFulfilled,
        EventKind::ReservationRerouted => pb::EventKind::ReservationRerouted,
        EventKind::UnitsCancelled => pb::EventKind::UnitsCancelled,
        EventKind::BackorderFilled => pb::EventKind::BackorderFilled,
        EventKind::StockChanged => pb::EventKind::StockChanged,
        EventKind::LowStock => pb::EventKind::LowStock,
        EventKind::StockRecovered => pb::EventKind::StockRecovered,
        EventKind::OutOfStock => pb::EventKind::OutOfStock,
        EventKind::BackInStock => pb::EventKind::BackInStock,
    }
}

/// The filter of a request, every field checked: kinds known, ids well formed, and at most
/// `max_values` values in all.
pub fn filter(r: &pb::WatchRequest, max_values: usize) -> Result<Filter, Status> {
    let values =
        r.kinds.len() + r.skus.len() + r.node_ids.len() + r.segments.len() + r.order_ids.len();
    if values > max_values {
        return Err(Status::invalid_argument(format!(
            "filter: {values} values in all, above the limit of {max_values} (events.max_filter_values)"
        )));
    }
    let mut f = Filter::default();
    for (i, &k) in r.kinds.iter().enumerate() {
        let kind = pb::EventKind::try_from(k)
            .ok()
            .and_then(|k| EventKind::ALL.into_iter().find(|e| event_kind(*e) == k))
            .ok_or_else(|| {
                Status::invalid_argument(format!("kinds[{i}]: {k} is not an event kind"))
            })?;
        f.kinds.insert(kind);
    }
    let ids =
        |field: &str, values: &[String]| -> Result<std::collections::HashSet<String>, Status> {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| convert::id(&format!("{field}[{i}]"), v).map_err(Status::from))
                .collect()
        };
    f.skus = ids("skus", &r.skus)?;
    f.nodes = ids("node_ids", &r.node_ids)?;
    f.segments = ids("segments", &r.segments)?;
    f.order_ids = ids("order_ids", &r.order_ids)?;
    Ok(f)
}

/// The cursor of a request: none (from now), or an id.
pub fn cursor(after: &str) -> Result<Option<EventId>, Status> {
    if after.is_empty() {
        return Ok(None);
    }
    after
        .parse()
        .map(Some)
        .map_err(|e: String| Status::invalid_argument(format!("after: {e}")))
}

pub fn event(e: &Event) -> pb::Event {
    let change = match &e.change {
        Change::Reservation(r) => pb::event::Change::Reservation(pb::ReservationChange {
            order_id: r.order_id.clone(),
            segment: r.segment.clone(),
            state: convert::state(r.state) as i32,
            allocations: r.allocations.iter().map(convert::allocation).collect(),
            line_ids: r.lines.clone(),
        }),
        Change::Stock(s) => pb::event::Change::Stock(pb::StockChange {
            sku: s.sku.clone(),
            level: Some(convert::node_stock(&s.node_id, &s.level, false)),
        }),
        Change::Alert(a) => pb::event::Change::Alert(pb::AlertChange {
            sku: a.sku.clone(),
            node_id: a.node_id.clone(),
            segment: a.segment.clone(),
            ats: i64::try_from(a.ats).unwrap_or(i64::MAX),
            threshold: a.threshold.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
        }),
    };
    pb::Event {
        id: e.id.to_string(),
        key: e.key.clone(),
        at_ms: e.at,
        kind: event_kind(e.kind) as i32,
        change: Some(change),
    }
}

fn store_status(e: StoreError) -> Status {
    Status::from(crate::error::Error::from(e))
}

/// Completes once the server stops (or its stop signal is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

/// Sends the events of a watch, history then live, until the client goes or falls behind.
struct Watcher {
    store: Arc<dyn StockStore>,
    filter: Filter,
    /// The newest id sent or passed over.
    last: Option<EventId>,
    out: mpsc::Sender<Result<pb::Event, Status>>,
    stopping: watch::Receiver<bool>,
}

impl Watcher {
    /// Sends the event if it matches; false once the client has gone.
    async fn offer(&mut self, e: &Event) -> bool {
        if self.last.is_some_and(|l| e.id <= l) {
            return true;
        }
        self.last = Some(e.id);
        if !self.filter.matches(e) {
            return true;
        }
        crate::metrics::event_sent();
        self.out.send(Ok(event(e))).await.is_ok()
    }

    /// The log after the cursor, page by page, until a page comes back short.
    async fn catch_up(&mut self, mut events: Vec<Arc<Event>>) -> bool {
        loop {
            let full = events.len() >= PAGE;
            for e in &events {
                if !self.offer(e).await {
                    return false;
                }
            }
            if !full {
                return true;
            }
            events = match self.store.read_events(self.last, PAGE).await {
                Ok(page) => page.events,
                Err(e) => {
                    let _ = self.out.send(Err(store_status(e))).await;
                    return false;
                }
            };
        }
    }

    async fn run(
        mut self,
        first: Option<Vec<Arc<Event>>>,
        mut live: broadcast::Receiver<Arc<Event>>,
    ) {
        if let Some(first) = first
            && !self.catch_up(first).await
        {
            return;
        }
        let mut stopping = self.stopping.clone();
        loop {
            let next = tokio::select! {
                next = live.recv() => next,
                _ = self.out.closed() => return,
                _ = stopped(&mut stopping) => {
                    let resume = self.last.map_or_else(String::new, |l| l.to_string());
                    let _ = self
                        .out
                        .send(Err(Status::unavailable(format!(
                            "this replica is shutting down; watch again (after = {resume:?}) on another"
                        ))))
                        .await;
                    return;
                }
            };
            match next {
                Ok(e) => {
                    if !self.offer(&e).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    crate::metrics::watcher_dropped();
                    let resume = self
                        .last
                        .map_or_else(|| "0-0".to_owned(), |l| l.to_string());
                    debug!(missed, %resume, "watcher fell behind");
                    let _ = self
                        .out
                        .send(Err(Status::resource_exhausted(format!(
                            "this watcher fell {missed} events behind the live feed (events.watcher_buffer); watch again with after = {resume}"
                        ))))
                        .await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = self
                        .out
                        .send(Err(Status::unavailable(
                            "the event feed stopped; watch again",
                        )))
                        .await;
                    return;
                }
            }
        }
    }
}

#[tonic::async_trait]
impl pb::events_server::Events for EventsApi {
    type WatchStream = EventStream;

    #[instrument(name = "watch", skip_all)]
    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let r = request.into_inner();
        let filter = filter(&r, self.limits.max_filter_values)?;
        let after = cursor(&r.after)?;
        // live first, then the log: whatever is appended between the two is in one of them
        let live = self.store.subscribe_events().await.map_err(store_status)?;
        let first = match after {
            // "0-0": from the oldest kept, whatever was trimmed before it
            Some(EventId::ZERO) => Some(
                self.store
                    .read_events(None, PAGE)
                    .await
                    .map_err(store_status)?
                    .events,
            ),
            Some(after) => Some(
                self.store
                    .read_events(Some(after), PAGE)
                    .await
                    .map_err(store_status)?
                    .events,
            ),
            None => None,
        };
        let (out, rx) = mpsc::channel(QUEUE);
        let watcher = Watcher {
            store: self.store.clone(),
            filter,
            last: after,
            out,
            stopping: self.stopping.clone(),
        };
        tokio::spawn(async move {
            let _connected = crate::metrics::watcher_connected();
            watcher.run(first, live).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// An event in the proto3 JSON mapping of `dom.v1.Event` (what webhooks POST): field names in
/// lowerCamelCase, 64-bit integers as strings, enums by name.
pub fn event_json(e: &pb::Event) -> serde_json::Value {
    use serde_json::json;
    let int = |v: i64| v.to_string();
    let mut out = json!({
        "id": e.id,
        "key": e.key,
        "atMs": int(e.at_ms),
        "kind": pb::EventKind::try_from(e.kind).map_or("EVENT_KIND_UNSPECIFIED", |k| k.as_str_name()),
    });
    let change = match &e.change {
        Some(pb::event::Change::Reservation(r)) => (
            "reservation",
            json!({
                "orderId": r.order_id,
                "segment": r.segment,
                "state": pb::ReservationState::try_from(r.state)
                    .map_or("RESERVATION_STATE_UNSPECIFIED", |s| s.as_str_name()),
                "allocations": r.allocations.iter().map(|a| json!({
                    "lineId": a.line_id,
                    "sku": a.sku,
                    "nodeId": a.node_id,
                    "quantity": int(a.quantity),
                    "shipped": int(a.shipped),
                    "released": int(a.released),
                })).collect::<Vec<_>>(),
                "lineIds": r.line_ids,
            }),
        ),
        Some(pb::event::Change::Stock(s)) => {
            let level = s.level.as_ref().map(|l| {
                let mut level = json!({
                    "nodeId": l.node_id,
                    "onHand": int(l.on_hand),
                    "reserved": int(l.reserved),
                    "safetyStock": int(l.safety_stock),
                    "ats": int(l.ats),
                    "lastSequence": l.last_sequence.to_string(),
                    "belowThreshold": l.below_threshold,
                });
                if let Some(t) = l.low_stock_threshold {
                    level["lowStockThreshold"] = json!(int(t));
                }
                level
            });
            ("stock", json!({ "sku": s.sku, "level": level }))
        }
        Some(pb::event::Change::Alert(a)) => ("alert", {
            let mut alert = json!({
                "sku": a.sku,
                "nodeId": a.node_id,
                "segment": a.segment,
                "ats": int(a.ats),
            });
            if let Some(t) = a.threshold {
                alert["threshold"] = json!(int(t));
            }
            alert
        }),
        None => return out,
    };
    out[change.0] = change.1;
    out
}
