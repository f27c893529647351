//! The domain's words as types: nodes and the network, customer segments and their rules,
//! orders, and the sourcing plans made for them (or, in `refusal`, why none could be made).
//! Nothing here knows about gRPC or storage.
//!
//! The file passes 600 lines only by its unit tests; the code before them reads in one sitting.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::store::{Protection, StockLevel};
use chrono::NaiveDate;
use geo::{Distance, Haversine, Point};
use serde::{Deserialize, Serialize};

mod refusal;

pub use refusal::{ExcludedStore, Refusal, RefusalKind, Shortage};

/// A point on the globe in WGS84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

impl GeoPoint {
    /// A point, or a sentence saying which coordinate is out of range.
    pub fn new(lat: f64, lon: f64) -> Result<Self, String> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(format!("latitude {lat} is outside -90..90"));
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(format!("longitude {lon} is outside -180..180"));
        }
        Ok(Self { lat, lon })
    }

    /// Great-circle distance in kilometres.
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let a = Point::new(self.lon, self.lat);
        let b = Point::new(other.lon, other.lat);
        Haversine.distance(a, b) / 1000.0
    }
}

/// What a fulfillment node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NodeKind {
    #[serde(rename = "warehouse")]
    Warehouse,
    #[serde(rename = "store")]
    Store,
    #[serde(rename = "3pl")]
    ThirdPartyLogistics,
    #[serde(rename = "dropship")]
    Dropship,
}

impl NodeKind {
    pub const ALL: [NodeKind; 4] = [
        NodeKind::Warehouse,
        NodeKind::Store,
        NodeKind::ThirdPartyLogistics,
        NodeKind::Dropship,
    ];

    /// The name used in config files.
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeKind::Warehouse => "warehouse",
            NodeKind::Store => "store",
            NodeKind::ThirdPartyLogistics => "3pl",
            NodeKind::Dropship => "dropship",
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What it costs to ship from a node. Per-unit terms feed the cost of each unit sourced there;
/// per-parcel terms are paid once per shipment from the node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    pub handling_per_unit: f64,
    pub per_parcel: f64,
    pub per_parcel_km: f64,
    pub per_unit_km: f64,
}

impl CostModel {
    /// Cost of one more unit shipped over `distance_km`.
    pub fn unit_cost(&self, distance_km: f64) -> f64 {
        self.handling_per_unit + self.per_unit_km * distance_km
    }

    /// Fixed cost of one parcel shipped over `distance_km`.
    pub fn parcel_cost(&self, distance_km: f64) -> f64 {
        self.per_parcel + self.per_parcel_km * distance_km
    }
}

/// A fulfillment node as loaded from the network config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub kind: NodeKind,
    pub location: GeoPoint,
    pub city: String,
    pub country: String,
    pub enabled: bool,
    pub can_ship: bool,
    pub can_pickup: bool,
    pub priority: i32,
    pub daily_capacity_units: u64,
    pub processing_days: u32,
    pub transit_km_per_day: f64,
    pub cost: CostModel,
}

impl Node {
    /// Days from order to delivery over `distance_km`: processing, then transit rounded up.
    pub fn days_to_deliver(&self, distance_km: f64) -> u32 {
        let transit = if distance_km <= 0.0 {
            0.0
        } else {
            (distance_km / self.transit_km_per_day).ceil().max(1.0)
        };
        self.processing_days + transit as u32
    }
}

/// The node registry, in config order, with an index by id.
#[derive(Debug, Clone, Default)]
pub struct Network {
    pub currency: String,
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
    /// Each node's place in id order.
    ranks: Vec<u32>,
    distances: DistanceCache,
}

/// Distances from every node to a destination, by destination: orders to the same address (or
/// pickups at the same store) reuse them. Bounded by memory, not by count, so large networks
/// keep fewer destinations.
#[derive(Clone)]
struct DistanceCache(moka::sync::Cache<(u64, u64), Arc<[f64]>>);

impl Default for DistanceCache {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .weigher(|_, distances: &Arc<[f64]>| {
                    u32::try_from(distances.len() * 8 + 32).unwrap_or(u32::MAX)
                })
                .max_capacity(16 * 1024 * 1024)
                .build(),
        )
    }
}

impl std::fmt::Debug for DistanceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DistanceCache({} destinations)", self.0.entry_count())
    }
}

impl Network {
    /// A network from nodes whose ids are already known to be unique.
    pub fn new(currency: String, nodes: Vec<Node>) -> Self {
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        let mut by_id: Vec<usize> = (0..nodes.len()).collect();
        by_id.sort_by(|&a, &b| nodes[a].id.cmp(&nodes[b].id));
        let mut ranks = vec![0; nodes.len()];
        for (rank, &at) in by_id.iter().enumerate() {
            ranks[at] = rank as u32;
        }
        Self {
            currency,
            nodes,
            index,
            ranks,
            distances: DistanceCache::default(),
        }
    }

    /// Kilometres from each node (in [`Network::nodes`] order) to `to`.
    pub fn distances_km(&self, to: &GeoPoint) -> Arc<[f64]> {
        self.distances
            .0
            .get_with((to.lat.to_bits(), to.lon.to_bits()), || {
                self.nodes
                    .iter()
                    .map(|n| n.location.distance_km(to))
                    .collect()
            })
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The place of the node at `at` (in [`Network::nodes`] order) in the order of node ids.
    pub fn rank(&self, at: usize) -> u32 {
        self.ranks[at]
    }

    pub fn get(&self, id: &str) -> Option<&Node> {
        self.index.get(id).map(|&i| &self.nodes[i])
    }

    /// Where the node `id` is in [`Network::nodes`].
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// What happens to units that no eligible node can ship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnfilledPolicy {
    /// The order is refused: no plan rather than a silent partial.
    Reject,
    /// Ship what there is; the rest is cancelled.
    Partial,
    /// Ship what there is; the rest waits for stock.
    Backorder,
}

impl UnfilledPolicy {
    pub fn allows_unfilled(&self) -> bool {
        !matches!(self, UnfilledPolicy::Reject)
    }
}

/// A customer segment's sourcing rules, as validated from config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRules {
    pub name: String,
    pub priority: i32,
    pub node_kinds: BTreeSet<NodeKind>,
    pub allowed_nodes: Option<BTreeSet<String>>,
    pub excluded_nodes: BTreeSet<String>,
    pub use_safety_stock: bool,
    pub max_shipments: u32,
    pub split_penalty: f64,
    pub max_distance_km: Option<f64>,
    pub unfilled: UnfilledPolicy,
    pub unfilled_penalty: f64,
    pub service_level_days: u32,
    pub lateness_penalty: f64,
    pub allow_transfer: bool,
    pub transfer_per_unit: f64,
    /// What this segment keeps of every node's stock of every sku from segments of a worse
    /// priority.
    pub protect: Protection,
    /// The protections of the segments of a better priority, by name: what they keep from this
    /// one. Filled in by [`Segments::new`].
    pub closed_by: Vec<(String, Protection)>,
    /// Units waiting for supply longer than this many days are cancelled (`backorder` only;
    /// `None`: they wait as long as the order is open).
    pub backorder_max_days: Option<u32>,
}

impl SegmentRules {
    /// What better segments keep from this one, as the store checks it.
    pub fn closed(&self) -> Vec<Protection> {
        self.closed_by.iter().map(|(_, p)| *p).collect()
    }

    /// A node's ATS of a sku as this segment sees it: its use of safety stock, less what
    /// better segments keep.
    pub fn ats(&self, level: &StockLevel) -> u64 {
        let kept = self.closed_by.iter().fold(0u64, |sum, (_, p)| {
            sum.saturating_add(p.kept(level.on_hand))
        });
        level.ats(self.use_safety_stock).saturating_sub(kept)
    }

    /// Units of `level` better segments keep from this one, and their names.
    pub fn kept(&self, level: &StockLevel) -> (u64, Vec<&str>) {
        let mut units = 0u64;
        let mut names = Vec::new();
        for (name, p) in &self.closed_by {
            let k = p.kept(level.on_hand);
            if k > 0 {
                units = units.saturating_add(k);
                names.push(name.as_str());
            }
        }
        (units, names)
    }
    /// Why the segment may not use `node` at all, if it may not.
    pub fn exclusion(&self, node: &Node) -> Option<String> {
        if !self.node_kinds.contains(&node.kind) {
            return Some(format!(
                "kind {} not allowed for segment {}",
                node.kind, self.name
            ));
        }
        if self.excluded_nodes.contains(&node.id) {
            return Some(format!("excluded by segment {}", self.name));
        }
        if let Some(allowed) = &self.allowed_nodes
            && !allowed.contains(&node.id)
        {
            return Some(format!("not in the allowed nodes of segment {}", self.name));
        }
        None
    }
}

/// What decisions are made with, as one unit that a running server swaps whole when planners
/// change it: the network (nodes, costs, capacities), the segment rules, and their version.
#[derive(Debug, Clone)]
pub struct Rules {
    pub network: Network,
    pub segments: Segments,
    /// Low-stock alert thresholds.
    pub alerts: crate::events::alerts::AlertRules,
    /// Look-ahead sourcing (`[lookahead]` of `segments.toml`).
    pub lookahead: crate::lookahead::Settings,
    /// A content hash of the files the rules were read from; every plan records it.
    pub version: String,
}

/// Every configured segment by name.
#[derive(Debug, Clone, Default)]
pub struct Segments {
    by_name: HashMap<String, SegmentRules>,
}

impl Segments {
    /// The segments, each told what the segments of a better (lower) priority keep from it.
    pub fn new(segments: impl IntoIterator<Item = SegmentRules>) -> Self {
        let segments: Vec<SegmentRules> = segments.into_iter().collect();
        let mut protecting: Vec<(i32, String, Protection)> = segments
            .iter()
            .filter(|s| !s.protect.is_none())
            .map(|s| (s.priority, s.name.clone(), s.protect))
            .collect();
        protecting.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Self {
            by_name: segments
                .into_iter()
                .map(|mut s| {
                    s.closed_by = protecting
                        .iter()
                        .filter(|(priority, _, _)| *priority < s.priority)
                        .map(|(_, name, p)| (name.clone(), *p))
                        .collect();
                    (s.name.clone(), s)
                })
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&SegmentRules> {
        self.by_name.get(name)
    }

    /// Segment names in alphabetical order.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub line_id: String,
    pub sku: String,
    pub quantity: u64,
    /// Lines sharing a group (a kit) ship together from one node.
    pub group: Option<String>,
}

/// How the order reaches the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryMode {
    Ship,
    Pickup { node_id: String },
}

/// An order to source, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub segment: String,
    pub destination: GeoPoint,
    pub country: String,
    pub lines: Vec<OrderLine>,
    pub delivery: DeliveryMode,
    pub ship_complete: bool,
    /// The customer's deadline; without one, the segment's service level applies.
    pub deliver_by: Option<NaiveDate>,
}

impl Order {
    /// The distinct skus of the order, sorted.
    pub fn skus(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.lines.iter().map(|l| l.sku.as_str()).collect();
        set.into_iter().map(str::to_owned).collect()
    }

    /// A stable digest of everything that defines the order (not the hold TTL nor the
    /// strategy), so a repeated Reserve can be told from a different order under the same id.
    pub fn fingerprint(&self) -> String {
        let mut lines: Vec<&OrderLine> = self.lines.iter().collect();
        lines.sort_by(|a, b| a.line_id.cmp(&b.line_id));
        let canonical = serde_json::json!({
            "segment": self.segment,
            "lat": self.destination.lat,
            "lon": self.destination.lon,
            "country": self.country,
            "lines": lines,
            "delivery": self.delivery,
            "ship_complete": self.ship_complete,
            "deliver_by": self.deliver_by,
        });
        format!("{:016x}", fnv1a64(canonical.to_string().as_bytes()))
    }
}

pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Which sourcing strategy made a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    Nearest,
    Priority,
    Optimal,
}

impl StrategyKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            StrategyKind::Nearest => "nearest",
            StrategyKind::Priority => "priority",
            StrategyKind::Optimal => "optimal",
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Units of one order line in a shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentLine {
    pub line_id: String,
    pub sku: String,
    pub quantity: u64,
}

/// What one node ships for an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    pub node_id: String,
    pub node_kind: NodeKind,
    pub lines: Vec<ShipmentLine>,
    pub cost: f64,
    pub distance_km: f64,
    pub estimated_delivery: NaiveDate,
    /// Days later than promised (0 when on time).
    pub days_late: u32,
    /// Sent to the pickup store first (a pickup order's transfer), not to the customer.
    pub transfer: bool,
}

/// Units of a line that no node ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnfilledLine {
    pub line_id: String,
    pub sku: String,
    pub quantity: u64,
    /// When inbound supply is expected to cover the units (segments that backorder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promised: Option<NaiveDate>,
}

/// Why a node ships nothing for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeReason {
    NoStock,
    ExcludedByRule,
    TooFar,
    OverCapacity,
    Dearer,
    NotNeeded,
    MaxShipments,
    Disabled,
}

/// A node the plan does not use, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnusedNode {
    pub node_id: String,
    pub reason: NodeReason,
    pub detail: String,
    pub extra_cost: f64,
}

/// How a plan was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SolveStatus {
    /// Proven least cost by the search over node sets, or (for orders with kits) the
    /// mixed-integer solver.
    Optimal,
    /// The solve budget ran out: the best feasible plan found, not proven optimal.
    Feasible,
    /// Proven least cost without the solver (one node ships everything cheapest, or a
    /// single-line order enumerated exactly).
    ExactFastPath,
    /// A rule-list strategy: feasible, with no claim on cost.
    Heuristic,
}

/// A plan's cost to serve, by what it pays for. The parts add up to the total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CostBreakdown {
    /// Distance-driven carrier cost, per parcel and per unit.
    pub shipping: f64,
    /// Picking and packing, per unit.
    pub handling: f64,
    /// Fixed cost per parcel.
    pub parcels: f64,
    /// Moving units to a pickup store.
    pub transfer: f64,
    /// The segment's penalty per shipment beyond the first.
    pub split_penalty: f64,
    /// The segment's penalty per day late, per parcel.
    pub lateness: f64,
    /// The segment's penalty per unit no node ships.
    pub unfilled: f64,
}

impl CostBreakdown {
    pub fn total(&self) -> f64 {
        self.shipping
            + self.handling
            + self.parcels
            + self.transfer
            + self.split_penalty
            + self.lateness
            + self.unfilled
    }
}

/// A sourcing decision for an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub shipments: Vec<Shipment>,
    pub unfilled: Vec<UnfilledLine>,
    pub total_cost: f64,
    pub cost: CostBreakdown,
    pub strategy: StrategyKind,
    pub status: SolveStatus,
    pub unused_nodes: Vec<UnusedNode>,
    /// Constraints that shaped the plan, for people ("stock of A at wh-x used up (5 of 5)").
    pub binding: Vec<String>,
    /// What the units the plan takes cost the orders still to come, as look-ahead priced them
    /// (weighted): minimised beside `total_cost`, and not part of it. 0 without look-ahead.
    #[serde(default, skip_serializing_if = "is_zero_cost")]
    pub opportunity_cost: f64,
    pub plan_micros: u64,
    /// The version of the rules the plan was made with (empty in records made before plans
    /// carried it).
    #[serde(default)]
    pub rules_version: String,
}

fn is_zero_cost(v: &f64) -> bool {
    *v == 0.0
}

impl Plan {
    pub fn shipment_count(&self) -> usize {
        self.shipments.len()
    }

    pub fn unfilled_units(&self) -> u64 {
        self.unfilled.iter().map(|u| u.quantity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn madrid_to_barcelona_is_about_505_km() {
        let madrid = GeoPoint::new(40.4165, -3.70256).unwrap();
        let barcelona = GeoPoint::new(41.38879, 2.15899).unwrap();
        let d = madrid.distance_km(&barcelona);
        assert!((d - 505.0).abs() < 5.0, "{d}");
    }

    #[test]
    fn distances_to_a_destination_are_computed_once_and_exact() {
        let config =
            crate::config::Config::load(crate::config::ConfigSource::Embedded, std::iter::empty())
                .unwrap();
        let net = &config.network;
        let valencia = GeoPoint::new(39.4699, -0.3763).unwrap();
        let first = net.distances_km(&valencia);
        assert_eq!(first.len(), net.len());
        for (node, d) in net.nodes().iter().zip(first.iter()) {
            assert_eq!(*d, node.location.distance_km(&valencia));
        }
        // the same destination again is the same slice; a clone of the network shares it
        assert!(Arc::ptr_eq(&first, &net.distances_km(&valencia)));
        assert!(Arc::ptr_eq(&first, &net.clone().distances_km(&valencia)));
        let porto = GeoPoint::new(41.1579, -8.6291).unwrap();
        assert!(!Arc::ptr_eq(&first, &net.distances_km(&porto)));
        assert_ne!(first[0], net.distances_km(&porto)[0]);
    }

    #[test]
    fn coordinates_out_of_range_are_named() {
        assert!(GeoPoint::new(91.0, 0.0).unwrap_err().contains("latitude"));
        assert!(
            GeoPoint::new(0.0, -181.0)
                .unwrap_err()
                .contains("longitude")
        );
        assert!(GeoPoint::new(f64::NAN, 0.0).is_err());
    }

    fn order(lines: Vec<OrderLine>) -> Order {
        Order {
            order_id: "o-1".into(),
            segment: "standard".into(),
            destination: GeoPoint {
                lat: 40.0,
                lon: -3.0,
            },
            country: "ES".into(),
            lines,
            delivery: DeliveryMode::Ship,
            ship_complete: false,
            deliver_by: None,
        }
    }

    fn line(id: &str, sku: &str, q: u64) -> OrderLine {
        OrderLine {
            line_id: id.into(),
            sku: sku.into(),
            quantity: q,
            group: None,
        }
    }

    #[test]
    fn fingerprint_ignores_line_order_but_not_quantities() {
        let a = order(vec![line("1", "A", 1), line("2", "B", 2)]);
        let b = order(vec![line("2", "B", 2), line("1", "A", 1)]);
        let c = order(vec![line("1", "A", 1), line("2", "B", 3)]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn delivery_days_round_transit_up() {
        let node = Node {
            id: "n".into(),
            name: "n".into(),
            kind: NodeKind::Warehouse,
            location: GeoPoint { lat: 0.0, lon: 0.0 },
            city: String::new(),
            country: "ES".into(),
            enabled: true,
            can_ship: true,
            can_pickup: false,
            priority: 0,
            daily_capacity_units: 10,
            processing_days: 1,
            transit_km_per_day: 500.0,
            cost: CostModel {
                handling_per_unit: 0.0,
                per_parcel: 0.0,
                per_parcel_km: 0.0,
                per_unit_km: 0.0,
            },
        };
        assert_eq!(node.days_to_deliver(0.0), 1);
        assert_eq!(node.days_to_deliver(10.0), 2);
        assert_eq!(node.days_to_deliver(500.0), 2);
        assert_eq!(node.days_to_deliver(501.0), 3);
    }
}
