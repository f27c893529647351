//! The replay tests' world: a tiny network, two segments, one-line orders, and a replay of
//! them from noon of one day.

use crate::clock::Millis;
use crate::config::{Config, ConfigSource, StockSeed};
use crate::domain::{
    DeliveryMode, GeoPoint, Network, Node, NodeKind, Order, OrderLine, Plan, Segments,
    UnfilledPolicy,
};
use crate::synth;

use super::{Decision, Options, OrdersFile, Outcome, Run, run};

const MADRID: (f64, f64) = (40.4165, -3.70256);
const BARCELONA: (f64, f64) = (41.38879, 2.15899);

fn node(id: &str, kind: NodeKind, (lat, lon): (f64, f64), capacity: u64) -> Node {
    // the sourcing tests' node, with a kind's demo costs and service figures
    let (cost, processing_days, transit_km_per_day, _) = synth::kind_defaults(kind);
    Node {
        daily_capacity_units: capacity,
        processing_days,
        transit_km_per_day,
        cost,
        ..crate::sourcing::tests::node(id, kind, lat, lon, 10)
    }
}

/// Two warehouses (Madrid, with `capacity_a` units a day, and Barcelona) and a Madrid
/// store; segment `strict` ships whole orders from warehouses only, `relaxed` backorders
/// what it cannot ship.
pub(super) fn tiny(stock: &[(&str, u64)], capacity_a: u64) -> Config {
    let mut config = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
    config.network = Network::new(
        "EUR".into(),
        vec![
            node("wh-a", NodeKind::Warehouse, MADRID, capacity_a),
            node("wh-b", NodeKind::Warehouse, BARCELONA, 1000),
            node("st-c", NodeKind::Store, MADRID, 1000),
        ],
    );
    let mut strict = synth::standard_segment();
    strict.name = "strict".into();
    strict.unfilled = UnfilledPolicy::Reject;
    strict.node_kinds = [NodeKind::Warehouse].into_iter().collect();
    let mut relaxed = synth::standard_segment();
    relaxed.name = "relaxed".into();
    relaxed.unfilled_penalty = 10.0;
    config.segments = Segments::new([strict, relaxed]);
    config.stock = stock
        .iter()
        .map(|(node, on_hand)| StockSeed {
            sku: "X".into(),
            node: (*node).into(),
            on_hand: *on_hand,
            safety_stock: 0,
        })
        .collect();
    config
}

pub(super) fn order(id: &str, segment: &str, quantity: u64) -> Order {
    Order {
        order_id: id.into(),
        segment: segment.into(),
        destination: GeoPoint {
            lat: MADRID.0,
            lon: MADRID.1,
        },
        country: "ES".into(),
        lines: vec![OrderLine {
            line_id: "1".into(),
            sku: "X".into(),
            quantity,
            group: None,
        }],
        delivery: DeliveryMode::Ship,
        ship_complete: false,
        deliver_by: None,
    }
}

pub(super) const NOON: Millis = 1_795_435_200_000; // 2026-11-23T12:00:00Z

pub(super) async fn replay(config: &Config, orders: Vec<Order>) -> Run {
    let orders = OrdersFile::from_orders("test", orders);
    let options = Options {
        strategy: None,
        start: NOON,
    };
    run(config, &config.stock, &orders, &options).await.unwrap()
}

pub(super) fn plan(d: &Decision) -> &Plan {
    match &d.outcome {
        Outcome::Planned(plan) => plan,
        other => panic!("{}: {other:?}", d.order_id),
    }
}
