//! Prometheus metrics: what operators watch (calls by method and status, solve time, how
//! decisions split, holds, the feed, Redis) and the HTTP endpoint that serves them.
//!
//! Recording goes through the `metrics` facade, so the domain code only calls the functions
//! here and never names an exporter. The recorder is installed once per process, the first
//! time the endpoint is set up; before that, and in processes that never serve metrics,
//! recording costs next to nothing.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

use crate::domain::{Plan, SolveStatus, StrategyKind};
use crate::store::UpdateResult;

/// Latency buckets, in seconds: sub-millisecond store calls up to calls near the timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Buckets for small counts: candidates per decision, shipments per order.
const COUNT_BUCKETS: &[f64] = &[
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0,
];

/// Scrapes served at once.
const MAX_CONNECTIONS: usize = 32;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use; `None` if another recorder was installed
/// first (then nothing here is recorded, and the endpoint says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("dom_router_decision_candidates".into()),
                        COUNT_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("dom_router_decision_shipments".into()),
                        COUNT_BUCKETS,
                    )
                })
                .map(PrometheusBuilder::build_recorder);
            let recorder = match recorder {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "cannot set up the metrics recorder");
                    return None;
                }
            };
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                warn!(error = %e, "another metrics recorder is installed; not recording");
                return None;
            }
            describe();
            zero();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    describe_counter!(
        "dom_router_requests_total",
        "gRPC calls finished, by method and status code"
    );
    describe_histogram!(
        "dom_router_request_duration_seconds",
        metrics::Unit::Seconds,
        "gRPC call latency until the response (or error) is ready, by method and status code"
    );
    describe_histogram!(
        "dom_router_solve_duration_seconds",
        metrics::Unit::Seconds,
        "time a strategy took to assign one order, by strategy and solver status"
    );
    describe_histogram!(
        "dom_router_decision_candidates",
        "candidate nodes per decision (eligible and holding some of the order's stock)"
    );
    describe_histogram!(
        "dom_router_decision_shipments",
        "shipments per decision (quotes and reserves)"
    );
    describe_counter!(
        "dom_router_decisions_total",
        "decisions made (quotes and reserve attempts)"
    );
    describe_counter!(
        "dom_router_decisions_split_total",
        "decisions that ship from more than one node; over dom_router_decisions_total, the split rate"
    );
    describe_counter!(
        "dom_router_decision_unfilled_units_total",
        "units decisions left unfilled"
    );
    describe_counter!(
        "dom_router_rerouted_units_total",
        "units nodes could not ship, by reason and by what became of them (rerouted, waiting, cancelled)"
    );
    describe_counter!(
        "dom_router_backorder_units_total",
        "units waiting for supply that this replica filled, or cancelled after the segment's backorder_max_days, by outcome"
    );
    describe_gauge!(
        "dom_router_holds_active",
        "holds not yet committed, released or expired, across every replica (as this replica last read them)"
    );
    describe_counter!(
        "dom_router_holds_expired_total",
        "holds this replica found expired and returned to stock"
    );
    describe_counter!(
        "dom_router_feed_updates_total",
        "stock feed updates by result: applied, stale (older or repeated sequence) or rejected"
    );
    describe_histogram!(
        "dom_router_redis_duration_seconds",
        metrics::Unit::Seconds,
        "Redis round trips by operation"
    );
    describe_counter!(
        "dom_router_redis_errors_total",
        "failed Redis round trips by operation and kind (error, timeout)"
    );
    describe_counter!(
        "dom_router_rules_reloads_total",
        "rule changes read from the config directory, by result: applied or refused"
    );
    describe_counter!(
        "dom_router_webhook_deliveries_total",
        "webhook POSTs by webhook and result: delivered, failed (tried again), rejected (4xx, passed over), lost (cursor behind the log)"
    );
    describe_gauge!(
        "dom_router_webhook_lag_seconds",
        "age of the last event a webhook's delivery went past, by webhook"
    );
    describe_counter!(
        "dom_router_alerts_total",
        "threshold crossings this replica reported, by kind: low, recovered, out, back"
    );
    describe_counter!(
        "dom_router_events_total",
        "events appended to the log, by kind, as this replica's log reader saw them (every replica sees every event)"
    );
    describe_gauge!(
        "dom_router_event_log_length",
        "events the log keeps, as the last sweep of this replica read it"
    );
    describe_counter!(
        "dom_router_events_sent_total",
        "events sent to watchers (one per watcher an event matched)"
    );
    describe_gauge!(
        "dom_router_event_watchers",
        "Watch streams this replica serves now"
    );
    describe_counter!(
        "dom_router_event_watchers_dropped_total",
        "Watch streams ended because the watcher fell events.watcher_buffer events behind"
    );
    describe_gauge!(
        "dom_router_rules_info",
        "1 for the version of the rules in force, 0 for versions replaced"
    );
    describe_histogram!(
        "dom_router_lookahead_refresh_seconds",
        metrics::Unit::Seconds,
        "time to compute look-ahead's prices from the demand learned and the stock, on the replica that refreshed"
    );
    describe_gauge!(
        "dom_router_lookahead_prices_version",
        "version of the look-ahead price table this replica uses"
    );
    describe_gauge!(
        "dom_router_lookahead_prices_computed_at_seconds",
        "when the price table in use was computed (Unix seconds): its age is time() minus this"
    );
    describe_gauge!(
        "dom_router_lookahead_priced",
        "node and sku pairs with a price above zero in the table in use"
    );
}

/// Counters exist from the start, at zero, so that rates and ratios (the split rate) have
/// a series before the first event.
fn zero() {
    for name in [
        "dom_router_decisions_total",
        "dom_router_decisions_split_total",
        "dom_router_decision_unfilled_units_total",
        "dom_router_holds_expired_total",
        "dom_router_events_sent_total",
        "dom_router_event_watchers_dropped_total",
    ] {
        counter!(name).increment(0);
    }
    for result in ["applied", "stale", "rejected"] {
        counter!("dom_router_feed_updates_total", "result" => result).increment(0);
    }
    for result in ["applied", "refused"] {
        counter!("dom_router_rules_reloads_total", "result" => result).increment(0);
    }
    for kind in ["low", "recovered", "out", "back"] {
        counter!("dom_router_alerts_total", "kind" => kind).increment(0);
    }
    for kind in crate::events::EventKind::ALL {
        counter!("dom_router_events_total", "kind" => kind.as_str()).increment(0);
    }
}

/// A finished gRPC call. `method` is one of a fixed set, so labels stay bounded.
pub fn request(method: &'static str, code: tonic::Code, took: Duration) {
    let code = code_name(code);
    counter!("dom_router_requests_total", "method" => method, "code" => code).increment(1);
    histogram!("dom_router_request_duration_seconds", "method" => method, "code" => code)
        .record(took.as_secs_f64());
}

/// One strategy run over one order.
pub fn solved(strategy: StrategyKind, status: SolveStatus, took: Duration) {
    histogram!(
        "dom_router_solve_duration_seconds",
        "strategy" => strategy_name(strategy),
        "status" => status_name(status)
    )
    .record(took.as_secs_f64());
}

/// A decision made (quote or reserve attempt) from `candidates` candidate nodes.
pub fn planned(candidates: usize, plan: &Plan) {
    histogram!("dom_router_decision_candidates").record(candidates as f64);
    histogram!("dom_router_decision_shipments").record(plan.shipments.len() as f64);
    counter!("dom_router_decisions_total").increment(1);
    if plan.shipments.len() > 1 {
        counter!("dom_router_decisions_split_total").increment(1);
    }
    counter!("dom_router_decision_unfilled_units_total").increment(plan.unfilled_units());
}

/// Units waiting for supply that were filled or cancelled (`outcome`).
pub fn backorder_units(outcome: &'static str, units: u64) {
    counter!("dom_router_backorder_units_total", "outcome" => outcome).increment(units);
}

/// The units of a reroute applied, by its reason and by what became of them.
pub fn rerouted(reason: crate::store::RerouteReason, fates: &[crate::store::UnitFate]) {
    for f in fates {
        let fate = match f.fate {
            crate::store::Fate::Rerouted { .. } | crate::store::Fate::Filled { .. } => "rerouted",
            crate::store::Fate::Waiting => "waiting",
            crate::store::Fate::Cancelled => "cancelled",
        };
        counter!("dom_router_rerouted_units_total", "reason" => reason.as_str(), "fate" => fate)
            .increment(f.units);
    }
}

pub fn alert(kind: crate::events::EventKind) {
    counter!("dom_router_alerts_total", "kind" => kind.as_str()).increment(1);
}

/// A webhook POST: `delivered`, `failed` (tried again), `rejected` (a 4xx, passed over), or
/// `lost` (its cursor fell behind what the log keeps).
pub fn webhook(result: &'static str, name: &str) {
    counter!("dom_router_webhook_deliveries_total", "webhook" => name.to_owned(), "result" => result)
        .increment(1);
}

/// How old the last event a webhook went past was, in seconds.
pub fn webhook_lag(name: &str, ms: i64) {
    gauge!("dom_router_webhook_lag_seconds", "webhook" => name.to_owned())
        .set(ms.max(0) as f64 / 1000.0);
}

/// An event appended to the log, as this replica's log reader saw it (on Redis every replica
/// sees every event; in memory there is one).
pub fn event_logged(kind: crate::events::EventKind) {
    counter!("dom_router_events_total", "kind" => kind.as_str()).increment(1);
}

pub fn event_log_length(n: u64) {
    gauge!("dom_router_event_log_length").set(n as f64);
}

pub fn event_sent() {
    counter!("dom_router_events_sent_total").increment(1);
}

pub fn watcher_dropped() {
    counter!("dom_router_event_watchers_dropped_total").increment(1);
}

/// A connected watcher, counted in `dom_router_event_watchers` until it is dropped.
pub struct Watching(());

pub fn watcher_connected() -> Watching {
    gauge!("dom_router_event_watchers").increment(1.0);
    Watching(())
}

impl Drop for Watching {
    fn drop(&mut self) {
        gauge!("dom_router_event_watchers").decrement(1.0);
    }
}

pub fn holds_expired(n: u64) {
    counter!("dom_router_holds_expired_total").increment(n);
}

pub fn holds_active(n: u64) {
    gauge!("dom_router_holds_active").set(n as f64);
}

/// Results of one batch of feed updates.
pub fn feed(results: &[UpdateResult]) {
    let (mut applied, mut stale, mut rejected) = (0u64, 0u64, 0u64);
    for r in results {
        match r {
            UpdateResult::Applied => applied += 1,
            UpdateResult::Stale => stale += 1,
            UpdateResult::Rejected(_) => rejected += 1,
        }
    }
    counter!("dom_router_feed_updates_total", "result" => "applied").increment(applied);
    counter!("dom_router_feed_updates_total", "result" => "stale").increment(stale);
    counter!("dom_router_feed_updates_total", "result" => "rejected").increment(rejected);
}

/// Feed updates refused before they reached the store (malformed on the wire).
pub fn feed_malformed(n: u64) {
    counter!("dom_router_feed_updates_total", "result" => "rejected").increment(n);
}

/// How a Redis round trip ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundTrip {
    Ok,
    Error,
    Timeout,
}

pub fn redis(op: &'static str, outcome: RoundTrip, took: Duration) {
    histogram!("dom_router_redis_duration_seconds", "op" => op).record(took.as_secs_f64());
    let kind = match outcome {
        RoundTrip::Ok => return,
        RoundTrip::Error => "error",
        RoundTrip::Timeout => "timeout",
    };
    counter!("dom_router_redis_errors_total", "op" => op, "kind" => kind).increment(1);
}

static RULES_VERSION: Mutex<Option<String>> = Mutex::new(None);

/// Look-ahead's prices were computed in `took` and are in use here.
pub fn prices_refreshed(prices: &crate::lookahead::Prices, took: std::time::Duration) {
    histogram!("dom_router_lookahead_refresh_seconds").record(took.as_secs_f64());
    prices_in_use(prices);
}

/// Look-ahead's price table now in use on this replica.
pub fn prices_in_use(prices: &crate::lookahead::Prices) {
    gauge!("dom_router_lookahead_prices_version").set(prices.version as f64);
    gauge!("dom_router_lookahead_prices_computed_at_seconds")
        .set(prices.computed_at as f64 / 1000.0);
    let priced: usize = prices.by_sku.values().map(|m| m.len()).sum();
    gauge!("dom_router_lookahead_priced").set(priced as f64);
}

/// The rules now in force.
pub fn rules_in_force(version: &str) {
    let mut current = RULES_VERSION.lock();
    if let Some(old) = current.take()
        && old != version
    {
        gauge!("dom_router_rules_info", "version" => old).set(0.0);
    }
    gauge!("dom_router_rules_info", "version" => version.to_owned()).set(1.0);
    *current = Some(version.to_owned());
}

pub fn rules_reload(applied: bool) {
    let result = if applied { "applied" } else { "refused" };
    counter!("dom_router_rules_reloads_total", "result" => result).increment(1);
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn strategy_name(kind: StrategyKind) -> &'static str {
    match kind {
        StrategyKind::Optimal => "optimal",
        StrategyKind::Nearest => "nearest",
        StrategyKind::Priority => "priority",
    }
}

fn status_name(status: SolveStatus) -> &'static str {
    match status {
        SolveStatus::Optimal => "optimal",
        SolveStatus::Feasible => "feasible",
        SolveStatus::ExactFastPath => "exact_fast_path",
        SolveStatus::Heuristic => "heuristic",
    }
}

/// Serves `GET /metrics` on `listener` until `stop` turns true.
pub async fn serve(listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let handle = handle();
    if let Some(h) = handle {
        let h = h.clone();
        let mut stop_upkeep = stop.clone();
        // histograms keep raw samples until drained; drain them now and then
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => h.run_upkeep(),
                    _ = stop_upkeep.changed() => return,
                }
            }
        });
    }
    // scrapers are few: a bound on connections and on how long a request may take to arrive
    // keeps idle or slow clients from holding file descriptors
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // out of file descriptors, say: wait rather than spin
                    debug!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            debug!("metrics: too many connections; closing one");
            continue;
        };
        let service = hyper::service::service_fn(move |req| answer(req, handle));
        tokio::spawn(async move {
            let _permit = permit;
            let io = hyper_util::rt::TokioIo::new(stream);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(false)
                .serve_connection(io, service);
            match tokio::time::timeout(Duration::from_secs(30), connection).await {
                Ok(Err(e)) => debug!(error = %e, "metrics: connection ended with an error"),
                Err(_) => debug!("metrics: connection took too long; closed"),
                Ok(Ok(())) => {}
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    handle: Option<&'static PrometheusHandle>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, v);
        }
        Ok(response)
    };
    match (req.method(), req.uri().path(), handle) {
        (&Method::GET, "/metrics", Some(h)) => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            h.render(),
        ),
        (&Method::GET, "/metrics", None) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "metrics are not recorded in this process\n".into(),
        ),
        (_, "/metrics", _) => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "metrics are at /metrics\n".into(),
        ),
    }
}
