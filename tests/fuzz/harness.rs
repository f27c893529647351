//! One real server per test, on the memory store or on Redis (a private `redis-server`), with a
//! tokio runtime of its own, and the loop that plays a batch of requests at it: each request is
//! judged by its answer, a rejected one must have changed nothing, a feed call or a reroute
//! must have changed what it says it did, and after the batch the stock of every sku it
//! touched must read sound and agree with the reservations.
//!
//! Every batch gets skus and order ids of its own (the names drawn, with a suffix for the
//! batch) and the demo stock of `stock.csv` for its skus, so a failing batch fails the same way
//! when it is replayed alone, on a fresh server, and its shrinking is not misled by what
//! earlier batches left behind.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dom_router::api::pb;
use dom_router::config::StoreKind;
use prost::Message;
use tonic::Code;

use crate::common::redis::RedisServer;
use crate::common::{TestServer, demo_config};
use crate::hostile::{ORDER_IDS, SKUS, Step, demo};
use crate::mutate::{Mangled, hex, mangle};
use crate::oracle::{World, brief, check_availability, check_reply, shown, well_formed};
use crate::wire::{self, Call, Method, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Memory,
    Redis,
}

/// One request of a batch, as sent.
struct Exchange {
    method: Method,
    frames: Vec<Vec<u8>>,
    /// What the server should decode the frames as; `None` if they do not decode.
    decoded: Option<Call>,
    /// The request before any damage to its bytes.
    meant: Call,
    mangled: bool,
}

impl Exchange {
    fn of(call: Call) -> Self {
        let frames = call.frames();
        Self {
            method: call.method(),
            decoded: call.method().decode(&frames).ok(),
            frames,
            meant: call,
            mangled: false,
        }
    }

    fn shown(&self) -> String {
        if self.mangled {
            format!(
                "{:?}\n  damaged to bytes {}\n  which decode as {:?}",
                self.meant,
                hex(&self.frames),
                self.decoded
            )
        } else {
            format!("{:?}", self.meant)
        }
    }

    /// The well-formed skus and order ids the request is about, meant or decoded.
    fn involved(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let calls = std::iter::once(&self.meant).chain(self.decoded.as_ref());
        let mut skus = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for call in calls {
            skus.extend(
                call.skus()
                    .into_iter()
                    .filter(|s| well_formed(s))
                    .map(str::to_owned),
            );
            ids.extend(
                call.order_ids()
                    .into_iter()
                    .filter(|s| well_formed(s))
                    .map(str::to_owned),
            );
        }
        (skus, ids)
    }
}

/// What a batch's requests may have changed, as read back.
#[derive(PartialEq)]
struct Reading {
    stock: Vec<Result<Vec<u8>, String>>,
    reservations: Vec<(String, Result<Vec<u8>, Code>)>,
}

pub struct Harness {
    server: TestServer,
    world: World,
    batches: AtomicU64,
    /// Answers by method and code, for the log of a run.
    tally: Mutex<BTreeMap<String, u64>>,
    store: Store,
    _redis: Option<RedisServer>,
    // last, so that the server's tasks stop before the runtime goes
    runtime: tokio::runtime::Runtime,
}

impl Harness {
    pub fn start(store: Store) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut config = demo_config();
        // no filling in the background: the oracle's reads of levels and reservations would
        // race with it (fills have tests of their own)
        config.settings.holds.fill_interval_ms = 0;
        // a slow debug build on a busy machine must not turn into a failure
        config.settings.server.request_timeout_ms = 30_000;
        let redis = (store == Store::Redis).then(RedisServer::start);
        if let Some(redis) = &redis {
            let s = &mut config.settings.store;
            s.kind = StoreKind::Redis;
            s.redis.urls = vec![redis.url()];
            s.redis.key_prefix = "fuzz".into();
            s.redis.op_timeout_ms = 10_000;
            s.redis.connect_timeout_ms = 5_000;
        }
        let server_settings = config.settings.server.clone();
        let holds = config.settings.holds.clone();
        let server = runtime.block_on(TestServer::start_with(config));
        let listed: pb::ListNodesResponse = runtime.block_on(async {
            let started = Instant::now();
            loop {
                let call = Call::ListNodes(pb::ListNodesRequest::default());
                let warm = Call::GetAvailability(pb::GetAvailabilityRequest {
                    skus: vec!["WARM-UP".into()],
                    segment: String::new(),
                });
                let ready = wire::ask::<pb::GetAvailabilityResponse>(&server.channel, &warm).await;
                match (ready, wire::ask(&server.channel, &call).await) {
                    (Ok(_), Ok(listed)) => break listed,
                    (ready, listed) if started.elapsed() > Duration::from_secs(20) => {
                        panic!("the server did not answer within 20 s: {ready:?} {listed:?}")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        let world = World {
            nodes: listed.nodes.iter().map(|n| n.node_id.clone()).collect(),
            pickup_nodes: listed
                .nodes
                .iter()
                .filter(|n| n.can_pickup)
                .map(|n| n.node_id.clone())
                .collect(),
            segments: listed.segments,
            max_lines: server_settings.max_lines_per_order,
            max_updates: server_settings.max_updates_per_call,
            max_skus: server_settings.max_skus_per_query,
            ttl_secs: holds.min_ttl_secs..=holds.max_ttl_secs,
        };
        assert_eq!(
            world.nodes.len(),
            demo().nodes.len(),
            "the server's network is not config/network.toml"
        );
        Self {
            server,
            world,
            batches: AtomicU64::new(0),
            tally: Mutex::default(),
            store,
            _redis: redis,
            runtime,
        }
    }

    /// Plays generated requests.
    pub fn run_steps(&self, steps: &[Step]) -> Result<(), String> {
        self.runtime.block_on(async {
            let ns = self.begin().await?;
            let mut batch = Batch::default();
            for (i, step) in steps.iter().enumerate() {
                let exchange = self.resolve(step, &ns).await;
                self.play(i, exchange, &mut batch).await?;
            }
            self.check_state(&batch, &ns).await
        })
    }

    /// Plays damaged encodings of well-formed requests.
    pub fn run_mangled(&self, items: &[Mangled]) -> Result<(), String> {
        self.runtime.block_on(async {
            let ns = self.begin().await?;
            let mut batch = Batch::default();
            for (i, item) in items.iter().enumerate() {
                let meant = localized(item.call.clone(), &ns);
                let method = meant.method();
                let frames = mangle(
                    meant.frames(),
                    method == Method::PushStock,
                    &item.frame,
                    &item.mutations,
                );
                let exchange = Exchange {
                    method,
                    decoded: method.decode(&frames).ok(),
                    frames,
                    meant,
                    mangled: true,
                };
                self.play(i, exchange, &mut batch).await?;
            }
            self.check_state(&batch, &ns).await
        })
    }

    /// A suffix no other batch of this test uses, and the demo stock for the batch's skus.
    async fn begin(&self) -> Result<String, String> {
        let n = self.batches.fetch_add(1, Ordering::Relaxed);
        // spread, so that a damaged suffix is not the next batch's
        let ns = format!(
            "~{:08x}",
            (n as u32).wrapping_mul(0x9e37_79b1) ^ 0x5bd1_e995
        );
        let updates: Vec<pb::StockUpdate> = demo()
            .stock
            .iter()
            .filter(|(sku, ..)| SKUS.contains(&sku.as_str()))
            .map(|(sku, node, on_hand, safety)| pb::StockUpdate {
                node_id: node.clone(),
                sku: format!("{sku}{ns}"),
                kind: pb::StockUpdateKind::Snapshot as i32,
                quantity: *on_hand,
                sequence: 1,
                order_id: String::new(),
                safety_stock: Some(*safety),
                reorder_point: None,
                ..Default::default()
            })
            .collect();
        let rows = updates.len() as u64;
        let call = Call::SetStock(pb::SetStockRequest { updates });
        let summary: pb::PushStockResponse = wire::ask(&self.server.channel, &call)
            .await
            .map_err(|s| format!("seeding the batch's stock failed: {s:?}"))?;
        if summary.applied != rows {
            return Err(format!("seeding the batch's stock: {summary:?}"));
        }
        Ok(ns)
    }

    /// The request a step stands for, with the batch's names.
    async fn resolve(&self, step: &Step, ns: &str) -> Exchange {
        let call = match step {
            Step::Call(call) => localized(call.clone(), ns),
            Step::Ship {
                order_id,
                quantity,
                sequence,
            } => {
                let order_id = local(order_id, ns);
                let get = Call::GetReservation(pb::GetReservationRequest {
                    order_id: order_id.clone(),
                });
                let first = wire::ask::<pb::GetReservationResponse>(&self.server.channel, &get)
                    .await
                    .ok()
                    .and_then(|r| r.reservation)
                    .and_then(|r| r.allocations.into_iter().next());
                let (node_id, sku) = match first {
                    Some(a) => (a.node_id, a.sku),
                    None => ("wh-getafe".to_owned(), format!("{}{ns}", SKUS[0])),
                };
                Call::SetStock(pb::SetStockRequest {
                    updates: vec![pb::StockUpdate {
                        node_id,
                        sku,
                        kind: pb::StockUpdateKind::Shipment as i32,
                        quantity: *quantity,
                        sequence: *sequence,
                        order_id,
                        safety_stock: None,
                        reorder_point: None,
                        ..Default::default()
                    }],
                })
            }
            Step::Reroute {
                request,
                allocation,
                part,
            } => {
                let mut request = request.clone();
                request.order_id = local(&request.order_id, ns);
                // the order named first, then the batch's others
                let others = ORDER_IDS.iter().map(|o| local(o, ns));
                for order_id in std::iter::once(request.order_id.clone()).chain(others) {
                    let get = Call::GetReservation(pb::GetReservationRequest {
                        order_id: order_id.clone(),
                    });
                    let allocations =
                        wire::ask::<pb::GetReservationResponse>(&self.server.channel, &get)
                            .await
                            .ok()
                            .and_then(|r| r.reservation)
                            .map(|r| r.allocations)
                            .unwrap_or_default();
                    let outstanding: Vec<(&pb::Allocation, i64)> = allocations
                        .iter()
                        .map(|a| (a, a.quantity - a.shipped - a.released))
                        .filter(|(_, units)| *units > 0)
                        .collect();
                    if outstanding.is_empty() {
                        continue;
                    }
                    let (a, units) = outstanding[allocation.index(outstanding.len())];
                    request.order_id = order_id;
                    request.node_id = a.node_id.clone();
                    if let Some(part) = part {
                        request.lines = vec![pb::RerouteLine {
                            line_id: a.line_id.clone(),
                            quantity: 1 + part.index(units as usize) as i64,
                        }];
                    }
                    break;
                }
                Call::Reroute(request)
            }
        };
        Exchange::of(call)
    }

    /// Sends one request and judges the answer; a rejected request must leave what it names
    /// as it was.
    async fn play(&self, i: usize, exchange: Exchange, batch: &mut Batch) -> Result<(), String> {
        let (mut skus, ids) = exchange.involved();
        if exchange.method == Method::Reroute {
            // a reroute names no sku: the stock it moves is its order's
            skus.extend(self.skus_held(&ids).await);
        }
        let before = self.read(&skus, &ids).await;
        let reply = wire::send(
            &self.server.channel,
            exchange.method,
            exchange.frames.clone(),
        )
        .await;
        let outcome = match (&reply, &exchange.decoded) {
            (Ok(_), _) => "OK".to_owned(),
            (Err(s), Some(_)) if s.code() == Code::InvalidArgument => {
                let field = s.message().split(':').next().unwrap_or_default();
                let field: String = field.chars().filter(|c| !c.is_ascii_digit()).collect();
                format!("InvalidArgument {}", shown(&field))
            }
            (Err(s), Some(_)) => format!("{:?}", s.code()),
            (Err(s), None) => format!("{:?} (undecodable)", s.code()),
        };
        *self
            .tally
            .lock()
            .unwrap()
            .entry(format!("{:?} {outcome}", exchange.method))
            .or_default() += 1;
        let fail = |what: String| {
            format!(
                "{:?} store, request {i} of the batch: {}\n  answer: {}\n  broke: {what}",
                self.store,
                exchange.shown(),
                answer(&reply),
            )
        };
        check_reply(
            exchange.method,
            exchange.decoded.as_ref(),
            &reply,
            &self.world,
        )
        .map_err(fail)?;
        // a stream cut short by a frame that does not decode keeps the frames before it
        let rejected = reply.is_err() && exchange.method != Method::PushStock;
        let reads = matches!(
            exchange.method,
            Method::Quote | Method::GetReservation | Method::GetAvailability | Method::ListNodes
        );
        let rerouted = match (&reply, &exchange.decoded) {
            (Ok(bytes), Some(Call::Reroute(r))) => pb::RerouteResponse::decode(bytes.as_ref())
                .ok()
                .map(|a| (r, a)),
            _ => None,
        };
        // a reroute answered as it was before changes nothing
        let repeated = rerouted.as_ref().is_some_and(|(_, a)| !a.rerouted);
        if rejected || reads || repeated {
            let after = self.read(&skus, &ids).await;
            if after != before {
                return Err(fail(format!(
                    "a request rejected, only reading or repeated changed what it names: \
                     before {} after {}",
                    before.describe(),
                    after.describe()
                )));
            }
        }
        if let Some((r, a)) = &rerouted
            && a.rerouted
        {
            let after = self.read(&skus, &ids).await;
            check_reroute(r, a, &before, &after).map_err(fail)?;
        }
        if let (Ok(bytes), Some(call)) = (&reply, &exchange.decoded)
            && matches!(call, Call::SetStock(_) | Call::PushStock(_))
        {
            let summary = pb::PushStockResponse::decode(bytes.as_ref()).unwrap_or_default();
            let after = self.read(&skus, &ids).await;
            // a sku that cannot be read is reported after the batch
            let readable = |r: &Reading| r.stock.iter().all(Result::is_ok);
            if readable(&before) && readable(&after) {
                check_feed(call.updates(), &summary, &before.levels(), &after.levels())
                    .map_err(fail)?;
            }
        }
        batch.skus.extend(skus);
        batch.order_ids.extend(ids);
        Ok(())
    }

    /// The skus the reservations of the order ids hold, the well-formed ones.
    async fn skus_held(&self, ids: &BTreeSet<String>) -> BTreeSet<String> {
        let mut skus = BTreeSet::new();
        for id in ids {
            let call = Call::GetReservation(pb::GetReservationRequest {
                order_id: id.clone(),
            });
            if let Ok(r) =
                wire::ask::<pb::GetReservationResponse>(&self.server.channel, &call).await
            {
                let allocations = r.reservation.unwrap_or_default().allocations;
                skus.extend(
                    allocations
                        .into_iter()
                        .map(|a| a.sku)
                        .filter(|s| well_formed(s)),
                );
            }
        }
        skus
    }

    /// Stock of the skus and the reservations of the order ids, as their bytes.
    async fn read(&self, skus: &BTreeSet<String>, ids: &BTreeSet<String>) -> Reading {
        let skus: Vec<String> = skus.iter().cloned().collect();
        let mut stock = Vec::new();
        for chunk in skus.chunks(self.world.max_skus) {
            let call = Call::GetAvailability(pb::GetAvailabilityRequest {
                skus: chunk.to_vec(),
                segment: String::new(),
            });
            let reply = wire::send(&self.server.channel, call.method(), call.frames()).await;
            stock.push(
                reply
                    .map(|b| b.to_vec())
                    .map_err(|s| format!("{:?} {}", s.code(), s.message())),
            );
        }
        let mut reservations = Vec::new();
        for id in ids {
            let call = Call::GetReservation(pb::GetReservationRequest {
                order_id: id.clone(),
            });
            let reply = wire::send(&self.server.channel, call.method(), call.frames()).await;
            reservations.push((id.clone(), reply.map(|b| b.to_vec()).map_err(|s| s.code())));
        }
        Reading {
            stock,
            reservations,
        }
    }

    /// After a batch: every sku it touched reads sound, for the whole network and for each
    /// segment, and what its skus have reserved is what its reservations hold.
    async fn check_state(&self, batch: &Batch, ns: &str) -> Result<(), String> {
        let skus: Vec<String> = batch.skus.iter().cloned().collect();
        let segments = std::iter::once(None).chain(self.world.segments.iter().map(Some));
        let mut reserved: BTreeMap<(String, String), i64> = BTreeMap::new();
        for segment in segments {
            for chunk in skus.chunks(self.world.max_skus) {
                let call = Call::GetAvailability(pb::GetAvailabilityRequest {
                    skus: chunk.to_vec(),
                    segment: segment.cloned().unwrap_or_default(),
                });
                let a: pb::GetAvailabilityResponse =
                    wire::ask(&self.server.channel, &call).await.map_err(|s| {
                        format!(
                            "{:?} store, after the batch: stock of {} (segment {segment:?}) \
                             is unreadable: {:?} {}",
                            self.store,
                            shown(&chunk.join(", ")),
                            s.code(),
                            shown(s.message())
                        )
                    })?;
                check_availability(chunk, segment.map(String::as_str), &a, &self.world)
                    .map_err(|e| format!("{:?} store, after the batch: {e}", self.store))?;
                if segment.is_none() {
                    for s in a.skus.iter().filter(|s| s.sku.ends_with(ns)) {
                        for n in &s.nodes {
                            reserved.insert((s.sku.clone(), n.node_id.clone()), n.reserved);
                        }
                    }
                }
            }
        }
        let mut held: HashMap<(String, String), i64> = HashMap::new();
        for id in &batch.order_ids {
            let call = Call::GetReservation(pb::GetReservationRequest {
                order_id: id.clone(),
            });
            let r = match wire::ask::<pb::GetReservationResponse>(&self.server.channel, &call).await
            {
                Ok(r) => r.reservation.unwrap_or_default(),
                Err(s) if s.code() == Code::NotFound => continue,
                Err(s) => {
                    return Err(format!(
                        "{:?} store, after the batch: reservation {} is unreadable: {:?} {}",
                        self.store,
                        shown(id),
                        s.code(),
                        shown(s.message())
                    ));
                }
            };
            let active = [
                pb::ReservationState::Held as i32,
                pb::ReservationState::Committed as i32,
            ];
            if !active.contains(&r.state) {
                continue;
            }
            for a in r.allocations.iter().filter(|a| a.sku.ends_with(ns)) {
                *held.entry((a.sku.clone(), a.node_id.clone())).or_default() +=
                    a.quantity - a.shipped - a.released;
            }
        }
        for (key, units) in &held {
            if !reserved.contains_key(key) && *units != 0 {
                return Err(format!(
                    "{:?} store, after the batch: {units} units of {} held at {} by \
                     reservations, but the node lists no stock of it",
                    self.store, key.0, key.1
                ));
            }
        }
        for ((sku, node), units) in &reserved {
            let want = held.get(&(sku.clone(), node.clone())).copied().unwrap_or(0);
            if *units != want {
                return Err(format!(
                    "{:?} store, after the batch: {sku} at {node} has {units} reserved, but \
                     its held and committed reservations hold {want}",
                    self.store
                ));
            }
        }
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let tally = self.tally.lock().unwrap();
        let lines: Vec<String> = tally.iter().map(|(k, n)| format!("  {k}: {n}")).collect();
        eprintln!(
            "{:?} store, {} batches, answers:\n{}",
            self.store,
            self.batches.load(Ordering::Relaxed),
            lines.join("\n")
        );
    }
}

#[derive(Default)]
struct Batch {
    skus: BTreeSet<String>,
    order_ids: BTreeSet<String>,
}

/// A node's level of a sku, as read.
type Levels = HashMap<(String, String), pb::NodeStock>;

impl Reading {
    /// Every level read, by sku and node; a level never written reads as none.
    fn levels(&self) -> Levels {
        let mut levels = Levels::new();
        for a in self.stock.iter().flatten() {
            let a = pb::GetAvailabilityResponse::decode(a.as_slice()).unwrap_or_default();
            for s in a.skus {
                for n in s.nodes {
                    levels.insert((s.sku.clone(), n.node_id.clone()), n);
                }
            }
        }
        levels
    }

    fn describe(&self) -> String {
        let stock: Vec<String> = self
            .stock
            .iter()
            .map(|r| match r {
                Ok(b) => brief(&format!(
                    "{:?}",
                    pb::GetAvailabilityResponse::decode(b.as_slice())
                )),
                Err(e) => brief(e),
            })
            .collect();
        let reservations: Vec<String> = self
            .reservations
            .iter()
            .map(|(id, r)| match r {
                Ok(b) => brief(&format!(
                    "{id}: {:?}",
                    pb::GetReservationResponse::decode(b.as_slice()).map(|r| r.reservation)
                )),
                Err(code) => format!("{id}: {code:?}"),
            })
            .collect();
        format!("stock {stock:?} reservations {reservations:?}")
    }
}

fn answer(reply: &Reply) -> String {
    match reply {
        Ok(bytes) => format!("OK ({} bytes)", bytes.len()),
        Err(s) => format!(
            "{:?}, message of {} bytes: {}",
            s.code(),
            s.message().len(),
            shown(s.message())
        ),
    }
}

/// The batch's own name for a sku or order id: the suffix added where the result is still
/// an id, so blank, control-laden and overlong names stay what they are.
fn local(name: &str, ns: &str) -> String {
    if well_formed(name) && name.len() + ns.len() <= 128 {
        format!("{name}{ns}")
    } else {
        name.to_owned()
    }
}

/// The request with the batch's names for its skus and order ids.
fn localized(mut call: Call, ns: &str) -> Call {
    let order = |o: &mut pb::Order| {
        o.order_id = local(&o.order_id, ns);
        for l in &mut o.lines {
            l.sku = local(&l.sku, ns);
        }
    };
    let update = |u: &mut pb::StockUpdate| {
        u.sku = local(&u.sku, ns);
        u.order_id = local(&u.order_id, ns);
    };
    match &mut call {
        Call::Quote(r) => r.order.iter_mut().for_each(order),
        Call::Reserve(r) => r.order.iter_mut().for_each(order),
        Call::Commit(r) => r.order_id = local(&r.order_id, ns),
        Call::Release(r) => r.order_id = local(&r.order_id, ns),
        Call::Reroute(r) => r.order_id = local(&r.order_id, ns),
        Call::GetReservation(r) => r.order_id = local(&r.order_id, ns),
        Call::SetStock(r) => r.updates.iter_mut().for_each(update),
        Call::PushStock(u) => u.iter_mut().for_each(update),
        Call::GetAvailability(r) => r.skus.iter_mut().for_each(|s| *s = local(s, ns)),
        Call::ListNodes(_) => {}
    }
    call
}

/// A reroute that moved units, judged against the stock and its reservation before and after
/// it: on hand changed only at the node that could not ship, and only for a short pick or
/// damage, by the units moved off it (the others go back to its stock); the reservation's
/// units outstanding left that node and joined the nodes the outcomes name, and it counts them
/// as rejected there. Reserved figures are checked after the batch, where a hold that runs out
/// meanwhile cannot mislead.
fn check_reroute(
    r: &pb::RerouteRequest,
    a: &pb::RerouteResponse,
    before: &Reading,
    after: &Reading,
) -> Result<(), String> {
    let removes = [
        pb::RerouteReason::ShortPick as i32,
        pb::RerouteReason::Damaged as i32,
    ]
    .contains(&r.reason);
    let mut gone_by_sku: HashMap<&str, i64> = HashMap::new();
    let mut gone_by_line: HashMap<&str, i64> = HashMap::new();
    let mut joined: HashMap<(&str, &str), i64> = HashMap::new();
    for o in &a.outcomes {
        *gone_by_sku.entry(&o.sku).or_default() += o.units;
        *gone_by_line.entry(&o.line_id).or_default() += o.units;
        if o.fate == pb::UnitFate::Rerouted as i32 {
            *joined.entry((&o.line_id, &o.node_id)).or_default() += o.units;
        }
    }
    let readable = |r: &Reading| r.stock.iter().all(Result::is_ok);
    if readable(before) && readable(after) {
        let (was, now) = (before.levels(), after.levels());
        let keys: BTreeSet<&(String, String)> = was.keys().chain(now.keys()).collect();
        for key in keys {
            let (sku, node) = key;
            let on_hand = |levels: &Levels| levels.get(key).map_or(0, |l| l.on_hand);
            let taken = if removes && *node == r.node_id {
                gone_by_sku.get(sku.as_str()).copied().unwrap_or(0)
            } else {
                0
            };
            let want = (on_hand(&was) - taken).max(0);
            if on_hand(&now) != want {
                return Err(format!(
                    "{} at {node}: on hand went from {} to {} under a reroute of reason {} at \
                     {}, which leaves {want}",
                    shown(sku),
                    on_hand(&was),
                    on_hand(&now),
                    r.reason,
                    shown(&r.node_id)
                ));
            }
        }
    }
    let reservation = |reading: &Reading| {
        let (_, bytes) = reading
            .reservations
            .iter()
            .find(|(id, _)| *id == r.order_id)?;
        pb::GetReservationResponse::decode(bytes.as_ref().ok()?.as_slice())
            .ok()?
            .reservation
    };
    let (Some(was), Some(now)) = (reservation(before), reservation(after)) else {
        return Err(format!(
            "the reservation of {} cannot be read around its reroute",
            shown(&r.order_id)
        ));
    };
    // a hold that ran out since gave its units back
    if now.state == pb::ReservationState::Expired as i32 {
        return Ok(());
    }
    // units outstanding and rejected, by line and node
    let units = |r: &pb::Reservation| {
        let mut units: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for a in &r.allocations {
            let e = units
                .entry((a.line_id.clone(), a.node_id.clone()))
                .or_default();
            e.0 += a.quantity - a.shipped - a.released;
            e.1 += a.rejected;
        }
        units.retain(|_, u| *u != (0, 0));
        units
    };
    let mut want = units(&was);
    for (line, gone) in &gone_by_line {
        let e = want
            .entry(((*line).to_owned(), r.node_id.clone()))
            .or_default();
        e.0 -= gone;
        e.1 += gone;
    }
    for ((line, node), units) in &joined {
        want.entry(((*line).to_owned(), (*node).to_owned()))
            .or_default()
            .0 += units;
    }
    want.retain(|_, u| *u != (0, 0));
    let got = units(&now);
    if got != want {
        return Err(format!(
            "units (outstanding, rejected) by line and node went from {:?} to {got:?}, where \
             the reroute's outcomes leave {want:?}",
            units(&was)
        ));
    }
    Ok(())
}

/// A feed call whose updates each name a different level, judged against the levels before
/// and after it: an update listed as rejected changed nothing; one whose sequence is not above
/// its level's last is stale and changed nothing; any other applied, leaving its sequence as
/// the level's last (and a snapshot's on hand, safety stock and reorder point, a delta's sum).
/// The counts agree.
fn check_feed(
    updates: &[pb::StockUpdate],
    summary: &pb::PushStockResponse,
    before: &Levels,
    after: &Levels,
) -> Result<(), String> {
    let keys: BTreeSet<(&str, &str)> = updates
        .iter()
        .map(|u| (u.sku.as_str(), u.node_id.as_str()))
        .collect();
    if keys.len() != updates.len() || summary.rejected > 1000 {
        return Ok(());
    }
    let listed: BTreeSet<u64> = summary.rejections.iter().map(|r| r.index).collect();
    let (mut applied, mut stale) = (0, 0);
    for (i, u) in updates.iter().enumerate() {
        if !well_formed(&u.sku) {
            continue;
        }
        let key = (u.sku.clone(), u.node_id.clone());
        let was = before.get(&key);
        let now = after.get(&key);
        let last = was.map_or(0, |l| l.last_sequence);
        let at = || format!("update {i} ({} at {})", shown(&u.sku), u.node_id);
        if listed.contains(&(i as u64)) || u.sequence <= last {
            if !listed.contains(&(i as u64)) {
                stale += 1;
            }
            if was != now {
                return Err(format!(
                    "{}, rejected or stale, changed its level from {was:?} to {now:?}",
                    at()
                ));
            }
            continue;
        }
        applied += 1;
        let Some(now) = now else {
            return Err(format!("{}, applied, left no level", at()));
        };
        let was = was.cloned().unwrap_or_default();
        let expected_on_hand = match u.kind {
            1 => Some(i128::from(u.quantity)),
            2 => Some(i128::from(was.on_hand) + i128::from(u.quantity)),
            _ => None,
        };
        let expected_safety = match (u.kind, u.safety_stock) {
            (1, Some(s)) => s,
            _ => was.safety_stock,
        };
        // a reorder point a snapshot sets is the node's threshold; one a snapshot leaves, or
        // an update of another kind, stays as it was
        let threshold_kept = match (u.kind, u.reorder_point) {
            (1, Some(r)) if r >= 0 => now.low_stock_threshold == Some(r),
            (1, Some(_)) => true,
            _ => was.last_sequence == 0 || now.low_stock_threshold == was.low_stock_threshold,
        };
        if now.last_sequence != u.sequence
            || expected_on_hand.is_some_and(|o| o != i128::from(now.on_hand))
            || (u.kind != 3 && now.safety_stock != expected_safety)
            || !threshold_kept
        {
            return Err(format!(
                "{}, sequence {} above the last {last}, was taken, yet its level went from \
                 {was:?} to {now:?}",
                at(),
                u.sequence
            ));
        }
    }
    if (summary.applied, summary.stale) != (applied, stale) {
        return Err(format!(
            "{} applied and {} stale, where the sequences say {applied} and {stale}",
            summary.applied, summary.stale
        ));
    }
    Ok(())
}
