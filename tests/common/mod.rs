//! Starts the real server in-process on 127.0.0.1:0 and connects the generated clients.
#![allow(dead_code)]

pub mod raw;
pub mod redis;
pub mod replica;

use std::net::SocketAddr;
use std::sync::Arc;

use dom_router::api::pb;
use dom_router::clock::ManualClock;
use dom_router::config::{Config, ConfigSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub use pb::inventory_client::InventoryClient;
pub use pb::network_client::NetworkClient;
pub use pb::sourcing_client::SourcingClient;

/// 2026-03-02T10:00:00Z
pub const START_MILLIS: i64 = 1_772_445_600_000;

pub struct TestServer {
    pub addr: SocketAddr,
    pub clock: ManualClock,
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    pub handle: Option<JoinHandle<Result<(), dom_router::server::ServeError>>>,
}

/// The other ports of a server started with [`TestServer::serve`].
pub struct Ports {
    pub health: SocketAddr,
    pub metrics: SocketAddr,
}

/// The demo config with no seed stock: each test pushes the stock it needs.
pub fn demo_config() -> Config {
    let mut config = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
    config.settings.store.seed_stock = false;
    config.settings.holds.sweep_interval_ms = 20;
    config.settings.holds.fill_interval_ms = 200;
    config.settings.server.health_check_interval_ms = 50;
    config
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(demo_config()).await
    }

    pub async fn start_with(config: Config) -> Self {
        let clock = ManualClock::new(START_MILLIS);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = dom_router::server::app(&config, Arc::new(clock.clone())).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(dom_router::server::run(listener, app, async {
            let _ = rx.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            addr,
            clock,
            channel,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    /// Serves `config` with every listener on 127.0.0.1:0: gRPC (TLS and tokens as the config
    /// says), plaintext health and metrics; with `rules`, reloading that config's rules. The
    /// channel connects lazily and in plaintext, so a TLS test brings its own.
    pub async fn serve(config: Config, rules: Option<ConfigSource>) -> (Self, Ports) {
        let clock = ManualClock::new(START_MILLIS);
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let listeners = dom_router::server::Listeners {
            grpc: bind().await.unwrap(),
            health: Some(bind().await.unwrap()),
            metrics: Some(bind().await.unwrap()),
        };
        let addr = listeners.grpc.local_addr().unwrap();
        let ports = Ports {
            health: listeners.health.as_ref().unwrap().local_addr().unwrap(),
            metrics: listeners.metrics.as_ref().unwrap().local_addr().unwrap(),
        };
        let app = dom_router::server::app(&config, Arc::new(clock.clone())).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(dom_router::server::serve(listeners, app, rules, async {
            let _ = rx.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let server = Self {
            addr,
            clock,
            channel,
            stop: Some(tx),
            handle: Some(handle),
        };
        (server, ports)
    }

    pub fn sourcing(&self) -> SourcingClient<Channel> {
        SourcingClient::new(self.channel.clone())
    }

    pub fn inventory(&self) -> InventoryClient<Channel> {
        InventoryClient::new(self.channel.clone())
    }

    pub fn network(&self) -> NetworkClient<Channel> {
        NetworkClient::new(self.channel.clone())
    }

    /// Signals the server to stop, without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.unwrap().unwrap();
        }
    }

    /// Sets on-hand (and safety stock) by snapshot, at a sequence above any used before.
    pub async fn stock(&self, rows: &[(&str, &str, i64, i64)]) {
        let seq = next_sequence();
        let updates = rows
            .iter()
            .map(|(node, sku, on_hand, safety)| pb::StockUpdate {
                node_id: (*node).into(),
                sku: (*sku).into(),
                kind: pb::StockUpdateKind::Snapshot as i32,
                quantity: *on_hand,
                sequence: seq,
                order_id: String::new(),
                safety_stock: Some(*safety),
                reorder_point: None,
                ..Default::default()
            })
            .collect();
        let summary = self
            .inventory()
            .set_stock(pb::SetStockRequest { updates })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(summary.applied as usize, rows.len(), "{summary:?}");
    }

    /// A sku's availability, network-wide or as `segment` sees it (empty: none).
    pub async fn availability(&self, sku: &str, segment: &str) -> pb::SkuAvailability {
        let mut a = self
            .inventory()
            .get_availability(pb::GetAvailabilityRequest {
                skus: vec![sku.into()],
                segment: segment.into(),
            })
            .await
            .unwrap()
            .into_inner();
        a.skus.remove(0)
    }

    /// ATS, on hand and reserved of a sku at a node.
    pub async fn level(&self, node: &str, sku: &str) -> (i64, i64, i64) {
        let a = self
            .inventory()
            .get_availability(pb::GetAvailabilityRequest {
                skus: vec![sku.into()],
                segment: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        a.skus[0]
            .nodes
            .iter()
            .find(|n| n.node_id == node)
            .map(|n| (n.ats, n.on_hand, n.reserved))
            .unwrap_or((0, 0, 0))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn next_sequence() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(1_000);
    SEQ.fetch_add(1, Ordering::SeqCst)
}

/// Valencia, Spain.
pub fn valencia() -> pb::Destination {
    pb::Destination {
        location: Some(pb::GeoPoint {
            lat: 39.4699,
            lon: -0.3763,
        }),
        country: "ES".into(),
    }
}

/// A destination in Spain.
pub fn in_spain(lat: f64, lon: f64) -> pb::Destination {
    pb::Destination {
        location: Some(pb::GeoPoint { lat, lon }),
        country: "ES".into(),
    }
}

pub const MADRID: (f64, f64) = (40.4165, -3.70256);
/// 55 km from Madrid, 260 from Zaragoza.
pub const GUADALAJARA: (f64, f64) = (40.6333, -3.1667);

/// The plan a quote of `order` answers with, by the server's strategy.
pub async fn quoted_plan(mut sourcing: SourcingClient<Channel>, order: pb::Order) -> pb::Plan {
    sourcing
        .quote(pb::QuoteRequest {
            order: Some(order),
            strategy: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap()
}

/// Look-ahead's test case, seen by a quote: a `vip` order of one unit of `sku` to Guadalajara.
/// The node it ships from, what the plan says of the Getafe DC if it passes it over, and the
/// plan's opportunity cost.
pub async fn guadalajara_quote(
    sourcing: SourcingClient<Channel>,
    sku: &str,
) -> (String, String, f64) {
    let mut o = order("q", "vip", vec![line("l1", sku, 1)]);
    o.destination = Some(in_spain(GUADALAJARA.0, GUADALAJARA.1));
    let plan = quoted_plan(sourcing, o).await;
    let getafe = plan
        .unused_nodes
        .iter()
        .find(|u| u.node_id == "wh-getafe")
        .map(|u| u.detail.clone())
        .unwrap_or_default();
    (
        plan.shipments[0].node_id.clone(),
        getafe,
        plan.opportunity_cost,
    )
}

/// Orders of one unit of `sku` to Madrid, `vip`, each reserved and released: demand, where
/// look-ahead learns it, and the stock back where it was. Ids start with `prefix`.
pub async fn madrid_demand(
    mut sourcing: SourcingClient<Channel>,
    sku: &str,
    prefix: &str,
    count: usize,
) {
    for i in 0..count {
        let id = format!("{prefix}{i}");
        let mut o = order(&id, "vip", vec![line("l1", sku, 1)]);
        o.destination = Some(in_spain(MADRID.0, MADRID.1));
        sourcing.reserve(reserve_request(o)).await.unwrap();
        sourcing
            .release(pb::ReleaseRequest {
                order_id: id,
                line_ids: Vec::new(),
            })
            .await
            .unwrap();
    }
}

pub fn line(id: &str, sku: &str, quantity: i64) -> pb::OrderLine {
    pb::OrderLine {
        line_id: id.into(),
        sku: sku.into(),
        quantity,
        group: String::new(),
    }
}

pub fn order(id: &str, segment: &str, lines: Vec<pb::OrderLine>) -> pb::Order {
    pb::Order {
        order_id: id.into(),
        segment: segment.into(),
        destination: Some(valencia()),
        lines,
        delivery_mode: pb::DeliveryMode::Ship as i32,
        pickup_node_id: String::new(),
        ship_complete: false,
        deliver_by: String::new(),
    }
}

pub fn reserve_request(order: pb::Order) -> pb::ReserveRequest {
    pb::ReserveRequest {
        order: Some(order),
        hold_ttl_seconds: 0,
        strategy: 0,
    }
}

/// A plan's rules version and the nodes it ships from.
pub fn version_and_nodes(plan: pb::Plan) -> (String, Vec<String>) {
    (
        plan.rules_version,
        plan.shipments.into_iter().map(|s| s.node_id).collect(),
    )
}

/// `network.toml` text with one node disabled.
pub fn disable_node(network: &str, node: &str) -> String {
    let anchor = format!("id = \"{node}\"\n");
    assert!(network.contains(&anchor), "no node {node}");
    network.replacen(&anchor, &format!("{anchor}enabled = false\n"), 1)
}

/// A feed delta of +1 unit.
pub fn plus_one(node: &str, sku: &str, sequence: u64) -> pb::StockUpdate {
    pb::StockUpdate {
        node_id: node.into(),
        sku: sku.into(),
        kind: pb::StockUpdateKind::Delta as i32,
        quantity: 1,
        sequence,
        order_id: String::new(),
        safety_stock: None,
        reorder_point: None,
        ..Default::default()
    }
}

/// GET /metrics over a plain HTTP/1.0 connection.
pub async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_owned()
}

/// The sum of the samples of `name` whose labels include every pair of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
