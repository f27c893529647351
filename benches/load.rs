//! End-to-end load generator: the real gRPC API of a server on a real Redis over loopback.
//!
//! Starts its own `redis-server` on a free port and the service on its own runtime, fills every
//! sku at every demo node with plenty of stock, then measures
//! 1. the feed alone: snapshots pushed over `PushStock` streams, in updates per second;
//! 2. checkouts: clients reserving demo orders (1–3 lines) and committing them (one in twenty
//!    released instead, one in ten quoted first), closed loop or at a fixed rate, while a feed
//!    pushes updates at the same time; orders per second through reserve and commit, and
//!    latency percentiles per call.
//!
//! `cargo bench --bench load [-- --seconds 10 --clients 32 --rate 0 --feed-rate 5000]`;
//! `--rate` > 0 starts orders at that many per second whatever the answers (open loop, at most
//! `--clients` in flight); `--strategy 1`
//! plans with `nearest` instead of the server's default; `--memory` runs the same load on the
//! in-memory store, to tell what Redis costs. `--watchers N` keeps N `Events.Watch` streams (no
//! filter, from now) reading everything during the checkouts, plus a probe: every 20 ms a
//! snapshot of a sku of its own, timed from its acknowledgement to its event's arrival at a
//! watcher filtering that sku. `--protect` has `vip` keep 2 units and `standard` 10% of on
//! hand of every node's stock from worse segments, to tell what protection costs.
//! `--reroutes N` then holds N more orders and has the first node of each turn it down
//! (`Reroute`, STORE_REJECTED, every unit, `--clients` at a time): reroutes per second and
//! their latency percentiles. `--fills N` then has N `standard` orders of ten lines wait for
//! skus no node has (`--clients` reserving at a time), pushes one snapshot that stocks them all
//! at two warehouses, and times until every line is held: lines filled per second.
//! `--lookahead` turns look-ahead on at its defaults: every reserve counts its demand in the
//! store, and the service prices stock every 60 s from it.

#[path = "../tests/common/redis.rs"]
mod redis_harness;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dom_router::api::pb;
use dom_router::api::pb::inventory_client::InventoryClient;
use dom_router::api::pb::sourcing_client::SourcingClient;
use dom_router::clock::SystemClock;
use dom_router::config::{Config, ConfigSource, StoreKind};
use dom_router::store::Protection;
use dom_router::synth;
use tonic::transport::Channel;

/// The allocator of the `dom-router` binary, so the server measured here allocates as it does
/// in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CITIES: &str = include_str!("data/cities.csv");

struct Options {
    seconds: u64,
    clients: usize,
    rate: u64,
    feed_rate: u64,
    feed_updates: usize,
    /// 0 for the server's default; 1 nearest, 2 priority, 3 optimal.
    strategy: i32,
    memory: bool,
    client_threads: usize,
    watchers: usize,
    /// vip keeps 2 units and standard 10% of on hand from worse segments.
    protect: bool,
    /// Orders held and then rerouted after the checkouts.
    reroutes: usize,
    /// Orders of ten lines left waiting, then filled by one snapshot.
    fills: usize,
    /// Look-ahead on: every reserve counts its demand, and one replica prices stock.
    lookahead: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Options {
        seconds: value("--seconds", 10),
        clients: value("--clients", 32) as usize,
        rate: value("--rate", 0),
        feed_rate: value("--feed-rate", 5_000),
        feed_updates: value("--feed-updates", 200_000) as usize,
        strategy: value("--strategy", 0) as i32,
        memory: args.iter().any(|a| a == "--memory"),
        client_threads: value("--client-threads", 1) as usize,
        watchers: value("--watchers", 0) as usize,
        protect: args.iter().any(|a| a == "--protect"),
        reroutes: value("--reroutes", 0) as usize,
        fills: value("--fills", 0) as usize,
        lookahead: args.iter().any(|a| a == "--lookahead"),
    }
}

/// Latencies in microseconds.
#[derive(Default)]
struct Latencies(Vec<u32>);

impl Latencies {
    fn add(&mut self, started: Instant) {
        self.0
            .push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }

    fn line(&mut self, name: &str) -> String {
        self.0.sort_unstable();
        let at = |q: f64| {
            if self.0.is_empty() {
                return 0.0;
            }
            let i = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len()) - 1;
            f64::from(self.0[i]) / 1000.0
        };
        format!(
            "{name:<8} {:>8} calls  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms",
            self.0.len(),
            at(0.5),
            at(0.99),
            at(0.999)
        )
    }
}

static SEQUENCE: AtomicU64 = AtomicU64::new(1);

fn snapshot(node: &str, sku: &str, on_hand: i64) -> pb::StockUpdate {
    pb::StockUpdate {
        node_id: node.into(),
        sku: sku.into(),
        kind: pb::StockUpdateKind::Snapshot as i32,
        quantity: on_hand,
        sequence: SEQUENCE.fetch_add(1, Ordering::Relaxed),
        order_id: String::new(),
        safety_stock: Some(0),
        reorder_point: None,
        ..Default::default()
    }
}

/// Pushes `count` snapshots over one stream; returns how many were applied.
async fn push(
    mut inventory: InventoryClient<Channel>,
    nodes: Arc<Vec<String>>,
    skus: Arc<Vec<String>>,
    count: usize,
    seed: u64,
) -> u64 {
    let mut rng = synth::Rng::new(seed);
    let updates: Vec<pb::StockUpdate> = (0..count)
        .map(|_| {
            let node = &nodes[rng.below(nodes.len() as u64) as usize];
            let sku = &skus[rng.below(skus.len() as u64) as usize];
            snapshot(node, sku, 1_000_000_000)
        })
        .collect();
    let summary = inventory
        .push_stock(tokio_stream::iter(updates))
        .await
        .expect("push stock")
        .into_inner();
    summary.applied
}

fn to_pb(order: &dom_router::domain::Order) -> pb::Order {
    pb::Order {
        order_id: order.order_id.clone(),
        segment: order.segment.clone(),
        destination: Some(pb::Destination {
            location: Some(pb::GeoPoint {
                lat: order.destination.lat,
                lon: order.destination.lon,
            }),
            country: order.country.clone(),
        }),
        lines: order
            .lines
            .iter()
            .map(|l| pb::OrderLine {
                line_id: l.line_id.clone(),
                sku: l.sku.clone(),
                quantity: l.quantity as i64,
                group: String::new(),
            })
            .collect(),
        delivery_mode: pb::DeliveryMode::Ship as i32,
        pickup_node_id: String::new(),
        ship_complete: false,
        deliver_by: String::new(),
    }
}

#[derive(Default)]
struct ClientResult {
    orders: u64,
    errors: u64,
    /// Failed calls by method and status code, to tell what went wrong.
    failures: std::collections::BTreeMap<(&'static str, i32), u64>,
    /// Orders a fixed-rate run could not start: too many were in flight.
    dropped: u64,
    reserve: Latencies,
    commit: Latencies,
    release: Latencies,
    quote: Latencies,
}

impl ClientResult {
    fn failed(&mut self, method: &'static str, status: &tonic::Status) {
        self.errors += 1;
        *self
            .failures
            .entry((method, status.code() as i32))
            .or_default() += 1;
    }

    fn merge(&mut self, other: ClientResult) {
        self.orders += other.orders;
        self.errors += other.errors;
        for (key, n) in other.failures {
            *self.failures.entry(key).or_default() += n;
        }
        self.dropped += other.dropped;
        self.reserve.0.extend(other.reserve.0);
        self.commit.0.extend(other.commit.0);
        self.release.0.extend(other.release.0);
        self.quote.0.extend(other.quote.0);
    }
}

/// One checkout: a quote first for one order in ten, a reserve, then a commit (or, for one in
/// twenty, a release).
async fn checkout(
    mut sourcing: SourcingClient<Channel>,
    order: pb::Order,
    n: u64,
    strategy: i32,
) -> ClientResult {
    let mut result = ClientResult::default();
    if n.is_multiple_of(10) {
        let started = Instant::now();
        let quoted = sourcing
            .quote(pb::QuoteRequest {
                order: Some(order.clone()),
                strategy,
            })
            .await;
        result.quote.add(started);
        if let Err(status) = &quoted {
            result.failed("quote", status);
        }
    }
    let started = Instant::now();
    let reserved = sourcing
        .reserve(pb::ReserveRequest {
            order: Some(order.clone()),
            hold_ttl_seconds: 0,
            strategy,
        })
        .await;
    result.reserve.add(started);
    if let Err(status) = &reserved {
        result.failed("reserve", status);
        return result;
    }
    let started = Instant::now();
    let done = if n.is_multiple_of(20) {
        let r = sourcing
            .release(pb::ReleaseRequest {
                order_id: order.order_id.clone(),
                line_ids: vec![],
            })
            .await;
        result.release.add(started);
        r.map(drop).map_err(|e| ("release", e))
    } else {
        let r = sourcing
            .commit(pb::CommitRequest {
                order_id: order.order_id.clone(),
            })
            .await;
        result.commit.add(started);
        r.map(drop).map_err(|e| ("commit", e))
    };
    match done {
        Ok(()) => result.orders += 1,
        Err((method, status)) => result.failed(method, &status),
    }
    result
}

fn order_source(id: u64, skus: Vec<String>) -> impl FnMut(u64) -> pb::Order {
    let mut orders = synth::OrderGen::new(synth::cities(CITIES, &["ES", "PT"]), skus, id + 7);
    move |n| {
        let lines = 1 + (n % 3) as usize;
        to_pb(&orders.order(&format!("c{id}-{n}"), "standard", lines))
    }
}

/// Closed loop: one checkout after another until `stop`.
async fn client(
    sourcing: SourcingClient<Channel>,
    id: usize,
    skus: Vec<String>,
    stop: Arc<AtomicBool>,
    strategy: i32,
) -> ClientResult {
    let mut next = order_source(id as u64, skus);
    let mut result = ClientResult::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        result.merge(checkout(sourcing.clone(), next(n), n, strategy).await);
    }
    result
}

/// Open loop: a checkout starts every 1/rate seconds whether or not earlier ones finished (so
/// slow answers cannot slow the offered load down), with at most `in_flight` at once.
async fn fixed_rate(
    sourcing: SourcingClient<Channel>,
    rate: u64,
    in_flight: usize,
    skus: Vec<String>,
    stop: Arc<AtomicBool>,
    strategy: i32,
) -> ClientResult {
    let mut next = order_source(1_000, skus);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let mut running = tokio::task::JoinSet::new();
    let mut result = ClientResult::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            result.dropped += 1;
            continue;
        };
        let (sourcing, order) = (sourcing.clone(), next(n));
        running.spawn(async move {
            let r = checkout(sourcing, order, n, strategy).await;
            drop(slot);
            r
        });
        while let Some(done) = running.try_join_next() {
            result.merge(done.expect("a checkout"));
        }
    }
    while let Some(done) = running.join_next().await {
        result.merge(done.expect("a checkout"));
    }
    result
}

/// Per watcher, the events received and how often it fell behind; the probe's latencies; and
/// the probes sent.
type Watched = (Vec<(u64, u64)>, Latencies, u64);

/// `n` watchers of every event from now, and the probe; once `stop` is set, what each watcher
/// received, the probe's latencies (acknowledged snapshot to its event) and the probes sent.
fn watch(
    channel: Channel,
    n: usize,
    node: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Watched> {
    use dom_router::api::pb::events_client::EventsClient;
    use tokio_stream::StreamExt;
    tokio::spawn(async move {
        let mut readers = Vec::new();
        for _ in 0..n {
            let channel = channel.clone();
            let stop = stop.clone();
            // a watcher as a client would write one: one that falls behind watches again
            // from the last id it received
            readers.push(tokio::spawn(async move {
                let (mut received, mut resumed) = (0u64, 0u64);
                let mut last = String::new();
                'watching: while !stop.load(Ordering::Relaxed) {
                    let mut stream = EventsClient::new(channel.clone())
                        .watch(pb::WatchRequest {
                            after: last.clone(),
                            ..Default::default()
                        })
                        .await
                        .expect("a watch")
                        .into_inner();
                    while !stop.load(Ordering::Relaxed) {
                        match tokio::time::timeout(Duration::from_millis(200), stream.next()).await
                        {
                            Ok(Some(Ok(e))) => {
                                let id = |s: &str| {
                                    s.split_once('-').map(|(a, b)| {
                                        (
                                            a.parse::<u64>().unwrap_or(0),
                                            b.parse::<u64>().unwrap_or(0),
                                        )
                                    })
                                };
                                if !last.is_empty() && id(&e.id) <= id(&last) {
                                    eprintln!("out of order: {} after {last}", e.id);
                                }
                                received += 1;
                                last = e.id;
                            }
                            Ok(Some(Err(status)))
                                if status.code() == tonic::Code::ResourceExhausted =>
                            {
                                resumed += 1;
                                continue 'watching;
                            }
                            Ok(Some(Err(status))) => {
                                eprintln!("a watcher ended: {status:?}");
                                break 'watching;
                            }
                            Ok(None) => break 'watching,
                            Err(_) => {}
                        }
                    }
                }
                (received, resumed)
            }));
        }
        let mut probe = EventsClient::new(channel.clone())
            .watch(pb::WatchRequest {
                skus: vec!["PROBE".into()],
                ..Default::default()
            })
            .await
            .expect("the probe's watch")
            .into_inner();
        let acked: Arc<parking_lot::Mutex<HashMap<u64, Instant>>> = Default::default();
        let sender = {
            let (acked, stop) = (acked.clone(), stop.clone());
            let mut inventory = InventoryClient::new(channel.clone());
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let update = snapshot(&node, "PROBE", 1 + sent as i64);
                    let sequence = update.sequence;
                    inventory
                        .set_stock(pb::SetStockRequest {
                            updates: vec![update],
                        })
                        .await
                        .expect("a probe");
                    acked.lock().insert(sequence, Instant::now());
                    sent += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                sent
            })
        };
        let mut latencies = Latencies::default();
        let mut early = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let Ok(Some(Ok(event))) =
                tokio::time::timeout(Duration::from_millis(200), probe.next()).await
            else {
                continue;
            };
            let Some(pb::event::Change::Stock(change)) = event.change else {
                continue;
            };
            let sequence = change.level.map_or(0, |l| l.last_sequence);
            let arrived = Instant::now();
            match acked.lock().get(&sequence) {
                Some(at) => latencies.0.push(
                    arrived
                        .duration_since(*at)
                        .as_micros()
                        .min(u128::from(u32::MAX)) as u32,
                ),
                // the event came before its acknowledgement did: 0
                None => early.push(sequence),
            }
        }
        latencies.0.extend(early.iter().map(|_| 0));
        let sent = sender.await.expect("the probe");
        let mut received = Vec::new();
        for r in readers {
            received.push(r.await.unwrap_or_default());
        }
        (received, latencies, sent)
    })
}

/// Reroutes: `--reroutes` orders held, then each turned down by the first node it holds units
/// at, `--clients` at a time.
async fn reroutes(sourcing: SourcingClient<Channel>, opts: &Options, skus: Vec<String>) {
    let per_client = opts.reroutes.div_ceil(opts.clients);
    let tasks: Vec<_> = (0..opts.clients)
        .map(|c| {
            let mut sourcing = sourcing.clone();
            let mut next = order_source(1_000 + c as u64, skus.clone());
            tokio::spawn(async move {
                let mut held = Vec::new();
                for n in 0..per_client as u64 {
                    let mut order = next(n);
                    order.order_id = format!("rr{c}-{n}");
                    let r = sourcing
                        .reserve(pb::ReserveRequest {
                            order: Some(order),
                            hold_ttl_seconds: 0,
                            strategy: 0,
                        })
                        .await
                        .expect("a reserve")
                        .into_inner()
                        .reservation
                        .expect("a reservation");
                    if let Some(a) = r.allocations.first() {
                        held.push((r.order_id.clone(), a.node_id.clone()));
                    }
                }
                let mut latencies = Latencies::default();
                let mut errors = 0u64;
                let started = Instant::now();
                for (order_id, node_id) in held {
                    let at = Instant::now();
                    let rerouted = sourcing
                        .reroute(pb::RerouteRequest {
                            reroute_id: format!("{order_id}-r"),
                            order_id,
                            node_id,
                            lines: Vec::new(),
                            reason: pb::RerouteReason::StoreRejected as i32,
                        })
                        .await;
                    latencies.add(at);
                    errors += u64::from(rerouted.is_err());
                }
                (latencies, errors, started.elapsed())
            })
        })
        .collect();
    let mut all = Latencies::default();
    let (mut errors, mut longest) = (0, Duration::ZERO);
    for t in tasks {
        let (latencies, e, took) = t.await.expect("a rerouting client");
        all.0.extend(latencies.0);
        errors += e;
        longest = longest.max(took);
    }
    println!(
        "reroutes, {} clients: {} in {:.2} s = {:.0} reroutes/s; {errors} errors",
        opts.clients,
        all.0.len(),
        longest.as_secs_f64(),
        all.0.len() as f64 / longest.as_secs_f64()
    );
    println!("{}", all.line("reroute"));
}

/// Lines per order of the fill benchmark.
const FILL_LINES: usize = 10;
/// Skus of the fill benchmark, none in stock until its snapshot.
const FILL_SKUS: usize = 100;

/// Backorders that fill: `--fills` orders of ten lines wait for skus no node has, then one
/// snapshot stocks those skus at two warehouses; the time until no line waits.
async fn fills(channel: Channel, opts: &Options) {
    let sku = |i: usize| format!("FILL-{:04}", i % FILL_SKUS);
    let per_client = opts.fills.div_ceil(opts.clients);
    let started = Instant::now();
    let tasks: Vec<_> = (0..opts.clients)
        .map(|c| {
            let mut sourcing = SourcingClient::new(channel.clone());
            tokio::spawn(async move {
                for n in 0..per_client {
                    let k = c * per_client + n;
                    let lines = (0..FILL_LINES)
                        .map(|l| pb::OrderLine {
                            line_id: format!("l{l}"),
                            sku: sku(k * 7 + l),
                            quantity: 1,
                            group: String::new(),
                        })
                        .collect();
                    let order = pb::Order {
                        order_id: format!("fill{k}"),
                        segment: "standard".into(),
                        destination: Some(pb::Destination {
                            location: Some(pb::GeoPoint {
                                lat: 40.4168,
                                lon: -3.7038,
                            }),
                            country: "ES".into(),
                        }),
                        lines,
                        delivery_mode: pb::DeliveryMode::Ship as i32,
                        ..Default::default()
                    };
                    sourcing
                        .reserve(pb::ReserveRequest {
                            order: Some(order),
                            hold_ttl_seconds: 3_600,
                            strategy: 0,
                        })
                        .await
                        .expect("a reserve that waits");
                }
                per_client
            })
        })
        .collect();
    let mut orders = 0;
    for t in tasks {
        orders += t.await.expect("a reserving client");
    }
    let lines = orders * FILL_LINES;
    println!(
        "fills: {orders} orders of {FILL_LINES} lines ({lines} lines) waiting after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // each sku at two warehouses, enough for every line
    let per_sku = (lines / FILL_SKUS + 1) as i64;
    let updates: Vec<pb::StockUpdate> = ["wh-getafe", "wh-zaragoza"]
        .iter()
        .flat_map(|n| (0..FILL_SKUS).map(move |i| snapshot(n, &sku(i), per_sku)))
        .collect();
    let mut inventory = InventoryClient::new(channel.clone());
    let skus: Vec<String> = (0..FILL_SKUS).map(sku).collect();
    let waiting = |mut inventory: InventoryClient<Channel>, skus: Vec<String>| async move {
        let a = inventory
            .get_availability(pb::GetAvailabilityRequest {
                skus,
                segment: String::new(),
            })
            .await
            .expect("availability")
            .into_inner();
        a.skus
            .iter()
            .flat_map(|s| s.waiting.iter().map(|w| w.units))
            .sum::<i64>()
    };
    let before = waiting(inventory.clone(), skus.clone()).await;
    let started = Instant::now();
    inventory
        .set_stock(pb::SetStockRequest { updates })
        .await
        .expect("the snapshot");
    let mut left = before;
    let mut half = None;
    while left > 0 && started.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        left = waiting(inventory.clone(), skus.clone()).await;
        if half.is_none() && left * 2 <= before {
            half = Some(started.elapsed());
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "fills: {before} units waiting; one snapshot of {} levels; all held after {took:.2} s = {:.0} lines/s ({:.0} orders/s); half after {:.2} s; {left} still waiting",
        FILL_SKUS * 2,
        (before - left) as f64 / took,
        orders as f64 / took,
        half.map_or(f64::NAN, |h| h.as_secs_f64())
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let opts = options();
    let redis = redis_harness::RedisServer::start();
    let mut config =
        Config::load(ConfigSource::Embedded, std::iter::empty()).expect("the demo config");
    if !opts.memory {
        config.settings.store.kind = StoreKind::Redis;
    }
    config.settings.store.seed_stock = false;
    config.settings.store.redis.urls = vec![redis.url()];
    config.lookahead.enabled = opts.lookahead;
    if opts.protect {
        let segments: Vec<_> = config
            .segments
            .names()
            .into_iter()
            .filter_map(|name| config.segments.get(&name).cloned())
            .map(|mut s| {
                s.protect = match s.name.as_str() {
                    "vip" => Protection {
                        units: 2,
                        share: 0.0,
                    },
                    "standard" => Protection {
                        units: 0,
                        share: 0.1,
                    },
                    _ => Protection::default(),
                };
                s
            })
            .collect();
        config.segments = dom_router::domain::Segments::new(segments);
    }
    let nodes: Arc<Vec<String>> = Arc::new(
        config
            .network
            .nodes()
            .iter()
            .map(|n| n.id.clone())
            .collect(),
    );
    let mut skus: Vec<String> = config.stock.iter().map(|s| s.sku.clone()).collect();
    skus.sort();
    skus.dedup();
    let skus = Arc::new(skus);

    // the server on a runtime of its own, as it would run alone
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = server_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    let app = dom_router::server::app(&config, Arc::new(SystemClock)).expect("the store");
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.spawn(dom_router::server::run(listener, app, async {
        let _ = stopped.await;
    }));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("a URL")
            .connect()
            .await
            .expect("the server");
        let mut inventory = InventoryClient::new(channel.clone());
        let fill: Vec<pb::StockUpdate> = nodes
            .iter()
            .flat_map(|n| skus.iter().map(move |s| snapshot(n, s, 1_000_000_000)))
            .collect();
        inventory
            .set_stock(pb::SetStockRequest { updates: fill })
            .await
            .expect("stock");

        // 1. the feed alone, over two streams, each for half of the nodes (as two WMS would),
        // so that neither makes the other's sequences stale
        let started = Instant::now();
        let streams: Vec<_> = (0..2)
            .map(|i| {
                let half: Vec<String> = nodes.iter().skip(i).step_by(2).cloned().collect();
                tokio::spawn(push(
                    InventoryClient::new(channel.clone()),
                    Arc::new(half),
                    skus.clone(),
                    opts.feed_updates / 2,
                    i as u64,
                ))
            })
            .collect();
        let mut applied = 0;
        for s in streams {
            applied += s.await.expect("a stream");
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "feed alone: {} snapshots sent, {applied} applied in {secs:.2} s = {:.0} updates/s",
            opts.feed_updates / 2 * 2,
            applied as f64 / secs
        );

        // 2. checkouts with a feed alongside
        let stop = Arc::new(AtomicBool::new(false));
        let feed = {
            let (nodes, skus, stop) = (nodes.clone(), skus.clone(), stop.clone());
            let inventory = InventoryClient::new(channel.clone());
            let rate = opts.feed_rate;
            tokio::spawn(async move {
                let mut pushed = 0u64;
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut seed = 100;
                while rate > 0 && !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    seed += 1;
                    pushed += push(
                        inventory.clone(),
                        nodes.clone(),
                        skus.clone(),
                        (rate / 10) as usize,
                        seed,
                    )
                    .await;
                }
                pushed
            })
        };
        let watching = (opts.watchers > 0).then(|| watch(channel.clone(), opts.watchers, nodes[0].clone(), stop.clone()));
        let started = Instant::now();
        let sourcing = SourcingClient::new(channel.clone());
        let clients: Vec<_> = if opts.rate > 0 {
            vec![tokio::spawn(fixed_rate(
                sourcing,
                opts.rate,
                opts.clients,
                skus.to_vec(),
                stop.clone(),
                opts.strategy,
            ))]
        } else {
            (0..opts.clients)
                .map(|i| {
                    tokio::spawn(client(
                        sourcing.clone(),
                        i,
                        skus.to_vec(),
                        stop.clone(),
                        opts.strategy,
                    ))
                })
                .collect()
        };
        tokio::time::sleep(Duration::from_secs(opts.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = ClientResult::default();
        for c in clients {
            total.merge(c.await.expect("a client"));
        }
        let secs = started.elapsed().as_secs_f64();
        let fed = feed.await.expect("the feed");
        println!(
            "checkouts, {}, {:.1} s: {} orders reserved then committed or released = {:.0} orders/s; {} errors; {} not started; feed alongside {:.0} updates/s",
            if opts.rate > 0 {
                format!("open loop at {} orders/s, at most {} in flight", opts.rate, opts.clients)
            } else {
                format!("closed loop, {} clients", opts.clients)
            },
            secs,
            total.orders,
            total.orders as f64 / secs,
            total.errors,
            total.dropped,
            fed as f64 / secs
        );
        for ((method, code), n) in &total.failures {
            println!("failed: {n} {method} calls with {:?}", tonic::Code::from_i32(*code));
        }
        println!("{}", total.reserve.line("reserve"));
        println!("{}", total.commit.line("commit"));
        println!("{}", total.release.line("release"));
        println!("{}", total.quote.line("quote"));
        if let Some(watching) = watching {
            let (received, mut probes, sent) = watching.await.expect("the watchers");
            let each: Vec<String> = received.iter().map(|(n, _)| n.to_string()).collect();
            let resumed: u64 = received.iter().map(|(_, r)| r).sum();
            println!(
                "events: {} watchers received {} events each ({:.0} events/s per watcher; {} times one fell behind and watched again from its last id); {} probes sent",
                received.len(),
                each.join(", "),
                received.iter().map(|(n, _)| *n).max().unwrap_or(0) as f64 / secs,
                resumed,
                sent
            );
            println!("{}", probes.line("ack→event"));
        }
        if opts.reroutes > 0 {
            reroutes(SourcingClient::new(channel.clone()), &opts, skus.to_vec()).await;
        }
        if opts.fills > 0 {
            fills(channel.clone(), &opts).await;
        }
    });
    let _ = stop_server.send(());
    let _ = server_rt.block_on(server);
    drop(redis);
}
