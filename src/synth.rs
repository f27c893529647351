//! Synthetic networks, stock and orders at real cities, for benchmarks and the reference
//! instances of `solver-models/`. Deterministic for a seed, so figures can be reproduced.
//!
//! Cities come from a CSV of `country,name,admin1,latitude,longitude,population` (GeoNames,
//! CC BY 4.0; a copy ships in `benches/data/cities.csv`).

use std::collections::BTreeSet;

use crate::config::StockSeed;
use crate::domain::{
    CostModel, DeliveryMode, GeoPoint, Network, Node, NodeKind, Order, OrderLine, SegmentRules,
    UnfilledPolicy,
};

/// A city of the data set.
#[derive(Debug, Clone, PartialEq)]
pub struct City {
    pub country: String,
    pub name: String,
    pub location: GeoPoint,
    pub population: u64,
}

/// Cities of `countries` from the CSV text.
pub fn cities(csv_text: &str, countries: &[&str]) -> Vec<City> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    reader
        .records()
        .filter_map(Result::ok)
        .filter(|r| countries.contains(&r.get(0).unwrap_or_default()))
        .filter_map(|r| {
            Some(City {
                country: r.get(0)?.to_owned(),
                name: r.get(1)?.to_owned(),
                location: GeoPoint::new(r.get(3)?.parse().ok()?, r.get(4)?.parse().ok()?).ok()?,
                population: r.get(5)?.parse().ok()?,
            })
        })
        .collect()
}

/// A small deterministic generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// An index drawn with probability proportional to `weights` (cumulative, ascending).
    pub fn weighted(&mut self, cumulative: &[f64]) -> usize {
        let total = cumulative.last().copied().unwrap_or(0.0);
        let x = self.unit() * total;
        cumulative
            .partition_point(|&c| c <= x)
            .min(cumulative.len() - 1)
    }
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut sum = 0.0;
    weights
        .map(|w| {
            sum += w;
            sum
        })
        .collect()
}

/// The cost model and service figures of a kind, as in the demo network's kind defaults.
pub fn kind_defaults(kind: NodeKind) -> (CostModel, u32, f64, u64) {
    let cost = |handling_per_unit, per_parcel, per_parcel_km, per_unit_km| CostModel {
        handling_per_unit,
        per_parcel,
        per_parcel_km,
        per_unit_km,
    };
    match kind {
        NodeKind::Warehouse => (cost(0.35, 3.20, 0.004, 0.0008), 1, 500.0, 20_000),
        NodeKind::Store => (cost(1.60, 4.10, 0.0045, 0.0010), 1, 400.0, 150),
        NodeKind::ThirdPartyLogistics => (cost(0.55, 3.60, 0.004, 0.0008), 1, 500.0, 8_000),
        NodeKind::Dropship => (cost(0.90, 5.50, 0.005, 0.0010), 2, 450.0, 3_000),
    }
}

/// A network of `n` nodes at distinct cities drawn by population: one in ten a warehouse,
/// one in ten a 3PL site, one in ten a dropship vendor, the rest stores.
pub fn network(cities: &[City], n: usize, seed: u64) -> Network {
    let mut rng = Rng::new(seed);
    // weighted sampling without replacement: the n smallest keys -ln(u)/population
    let mut keyed: Vec<(f64, usize)> = cities
        .iter()
        .enumerate()
        .map(|(i, c)| (-(1.0 - rng.unit()).ln() / c.population.max(1) as f64, i))
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let nodes = keyed
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(i, (_, c))| {
            let city = &cities[c];
            let kind = match i % 10 {
                0 => NodeKind::Warehouse,
                1 => NodeKind::ThirdPartyLogistics,
                2 => NodeKind::Dropship,
                _ => NodeKind::Store,
            };
            let (cost, processing_days, transit_km_per_day, capacity) = kind_defaults(kind);
            Node {
                id: format!("{}-{i:04}", kind.as_str()),
                name: format!("{} {}", city.name, kind.as_str()),
                kind,
                location: city.location,
                city: city.name.clone(),
                country: city.country.clone(),
                enabled: true,
                can_ship: true,
                can_pickup: kind == NodeKind::Store,
                priority: match kind {
                    NodeKind::Warehouse => 10,
                    NodeKind::ThirdPartyLogistics => 20,
                    NodeKind::Dropship => 30,
                    NodeKind::Store => 40,
                },
                daily_capacity_units: capacity,
                processing_days,
                transit_km_per_day,
                cost,
            }
        })
        .collect();
    Network::new("USD".into(), nodes)
}

/// `n` sku ids, `SKU-00001` and on; lower numbers are more popular.
pub fn skus(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("SKU-{i:05}")).collect()
}

/// Stock of every sku in about `share` of the nodes (more units in warehouses and 3PL
/// sites); the least popular tenth of skus runs short, a unit or two per node.
pub fn stock(network: &Network, skus: &[String], share: f64, seed: u64) -> Vec<StockSeed> {
    let mut rng = Rng::new(seed);
    let mut rows = Vec::new();
    for (s, sku) in skus.iter().enumerate() {
        let scarce = s >= skus.len() * 9 / 10;
        for node in network.nodes() {
            if rng.unit() >= share {
                continue;
            }
            let on_hand = if scarce {
                1 + rng.below(2)
            } else {
                match node.kind {
                    NodeKind::Warehouse | NodeKind::ThirdPartyLogistics => 20 + rng.below(200),
                    NodeKind::Dropship => 10 + rng.below(100),
                    NodeKind::Store => rng.below(8),
                }
            };
            if on_hand > 0 {
                rows.push(StockSeed {
                    sku: sku.clone(),
                    node: node.id.clone(),
                    on_hand,
                    safety_stock: if node.kind == NodeKind::Store {
                        0
                    } else {
                        2.min(on_hand)
                    },
                });
            }
        }
    }
    rows
}

/// Draws orders: destinations weighted by city population, skus by a Zipf popularity (the
/// k-th sku weighs 1/k).
#[derive(Debug, Clone)]
pub struct OrderGen {
    cities: Vec<City>,
    city_weights: Vec<f64>,
    skus: Vec<String>,
    sku_weights: Vec<f64>,
    rng: Rng,
}

impl OrderGen {
    pub fn new(cities: Vec<City>, skus: Vec<String>, seed: u64) -> Self {
        let city_weights = cumulative(cities.iter().map(|c| c.population as f64));
        let sku_weights = cumulative((1..=skus.len()).map(|k| 1.0 / k as f64));
        Self {
            cities,
            city_weights,
            skus,
            sku_weights,
            rng: Rng::new(seed),
        }
    }

    /// An order of `lines` lines of distinct skus, 1 to 3 units each.
    pub fn order(&mut self, id: &str, segment: &str, lines: usize) -> Order {
        let city = &self.cities[self.rng.weighted(&self.city_weights)];
        let mut chosen = BTreeSet::new();
        let lines = lines.min(self.skus.len());
        while chosen.len() < lines {
            chosen.insert(self.rng.weighted(&self.sku_weights));
        }
        let lines = chosen
            .into_iter()
            .enumerate()
            .map(|(i, s)| OrderLine {
                line_id: format!("{}", i + 1),
                sku: self.skus[s].clone(),
                quantity: 1 + self.rng.below(3),
                group: None,
            })
            .collect();
        Order {
            order_id: id.to_owned(),
            segment: segment.to_owned(),
            destination: city.location,
            country: city.country.clone(),
            lines,
            delivery: DeliveryMode::Ship,
            ship_complete: false,
            deliver_by: None,
        }
    }
}

/// The segments of a mixed day, taken in turn: 60% standard, 20% vip, 20% marketplace, as the
/// demo config names them.
pub const DAY_SEGMENTS: [&str; 5] = ["standard", "standard", "standard", "vip", "marketplace"];

/// A day of orders `o0`, `o1`, ... in the mix of the cost replay: segments in turn from
/// [`DAY_SEGMENTS`]; 1, 2 or 3 lines three times in ten each, 4 lines once. The line counts have a generator of their
/// own, so a day keeps its destinations and skus when the mix changes.
#[derive(Debug, Clone)]
pub struct MixedDay {
    orders: OrderGen,
    lines: Rng,
    next: usize,
}

impl MixedDay {
    pub fn new(orders: OrderGen, lines_seed: u64) -> Self {
        Self {
            orders,
            lines: Rng::new(lines_seed),
            next: 0,
        }
    }
}

impl Iterator for MixedDay {
    type Item = Order;

    fn next(&mut self) -> Option<Order> {
        let i = self.next;
        self.next += 1;
        let lines = 1 + (self.lines.below(100) as usize).min(99) / 30;
        Some(self.orders.order(
            &format!("o{i}"),
            DAY_SEGMENTS[i % DAY_SEGMENTS.len()],
            lines,
        ))
    }
}

/// The segment rules of synthetic networks: every kind, up to 3 parcels, backorders.
pub fn standard_segment() -> SegmentRules {
    SegmentRules {
        name: "standard".into(),
        priority: 50,
        node_kinds: NodeKind::ALL.into_iter().collect(),
        allowed_nodes: None,
        excluded_nodes: BTreeSet::new(),
        use_safety_stock: false,
        max_shipments: 3,
        split_penalty: 4.0,
        max_distance_km: None,
        unfilled: UnfilledPolicy::Backorder,
        unfilled_penalty: 40.0,
        service_level_days: 4,
        lateness_penalty: 2.0,
        allow_transfer: false,
        transfer_per_unit: 1.0,
        closed_by: Vec::new(),
        backorder_max_days: None,
        protect: crate::store::Protection::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "country,name,admin1,latitude,longitude,population\n\
        US,A,1,40.0,-74.0,1000\nUS,B,1,34.0,-118.0,500\nES,C,1,40.4,-3.7,300\nUS,D,1,41.8,-87.6,800\n";

    #[test]
    fn networks_and_orders_are_deterministic() {
        let cities = cities(CSV, &["US"]);
        assert_eq!(cities.len(), 3);
        let a = network(&cities, 3, 7);
        let b = network(&cities, 3, 7);
        assert_eq!(a.nodes(), b.nodes());
        let ids: BTreeSet<&str> = a.nodes().iter().map(|n| n.city.as_str()).collect();
        assert_eq!(ids.len(), 3, "distinct cities");
        let skus = skus(5);
        let mut g1 = OrderGen::new(cities.clone(), skus.clone(), 3);
        let mut g2 = OrderGen::new(cities, skus, 3);
        let (o1, o2) = (g1.order("o", "standard", 4), g2.order("o", "standard", 4));
        assert_eq!(o1, o2);
        assert_eq!(o1.lines.len(), 4);
    }

    #[test]
    fn a_mixed_day_takes_segments_in_turn_with_one_to_four_lines() {
        let orders: Vec<Order> = MixedDay::new(OrderGen::new(cities(CSV, &["US"]), skus(20), 4), 5)
            .take(500)
            .collect();
        assert_eq!(orders[3].order_id, "o3");
        assert_eq!(orders[3].segment, "vip");
        let standard = orders.iter().filter(|o| o.segment == "standard").count();
        assert_eq!(standard, 300);
        let mut by_lines = [0usize; 5];
        for o in &orders {
            by_lines[o.lines.len()] += 1;
        }
        assert_eq!(by_lines[0], 0);
        assert!(by_lines[1] > by_lines[4] && by_lines[4] > 0, "{by_lines:?}");
    }

    #[test]
    fn zipf_popularity_favours_the_first_skus() {
        let cities = cities(CSV, &["US"]);
        let mut g = OrderGen::new(cities, skus(100), 1);
        let mut first = 0;
        let mut last_half = 0;
        for i in 0..2000 {
            let o = g.order(&i.to_string(), "standard", 1);
            let k: usize = o.lines[0].sku[4..].parse().unwrap();
            if k == 1 {
                first += 1;
            }
            if k > 50 {
                last_half += 1;
            }
        }
        // 1/H(100) = 19% for the first sku; about 13% for the whole second half
        assert!(first > 300 && first < 480, "{first}");
        assert!(last_half > 180 && last_half < 360, "{last_half}");
    }
}
