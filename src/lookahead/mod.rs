//! Look-ahead sourcing: pricing the stock an order takes by what it costs the orders still to
//! come.
//!
//! Demand is learned online from the orders planned, by sku and destination region (cells of
//! a grid over the map), over a sliding window ([`DemandWindow`], or counters in the store).
//! Every refresh, a network LP of the demand expected over the horizon against the current
//! stock is solved sku by sku ([`flow::Transport`]), and the dual price of each node's stock
//! of each sku is its opportunity cost ([`Prices`]). The optimiser then minimises cost to serve
//! plus the weighted opportunity cost of the units a plan takes, so the last units a region can
//! get from one node only are kept for it where another node serves this order nearly as
//! cheaply. With no demand learned, every price is zero and plans are as without look-ahead.

pub mod calibrate;
pub mod flow;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::domain::{GeoPoint, Network};
use crate::store::StockView;

/// The `[lookahead]` section of `segments.toml`, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub enabled: bool,
    /// Multiplies the prices in each decision: 0 plans as without look-ahead.
    pub weight: f64,
    /// Expected demand over this much time ahead, in seconds.
    pub horizon_secs: u64,
    /// When stock is replenished each day (UTC): where set, the horizon runs to its next
    /// occurrence instead, as the stock there is now has to last until then.
    pub replenished_at: Option<chrono::NaiveTime>,
    /// Demand learned over this much time past, in seconds.
    pub window_secs: u64,
    /// How often prices are computed again, in seconds.
    pub refresh_secs: u64,
    /// Prices are computed again, before `refresh_secs` is up, once a node's ATS of a sku with
    /// demand moves this many units from what the prices were computed against; 0 for never.
    pub refresh_on_change_units: u64,
    /// Destinations are grouped in square cells of this size, in km.
    pub region_km: f64,
    /// The cost of a unit of demand no node serves, for demand of a segment the rules no
    /// longer name (each segment's own is its unfilled penalty).
    pub lost_sale_cost: f64,
    /// Rounds of calibration against the optimiser's own decisions ([`calibrate`]) after the
    /// LP; 0 for the LP's prices alone.
    pub calibration_rounds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: false,
            weight: 1.0,
            horizon_secs: 3_600,
            replenished_at: None,
            window_secs: 3_600,
            refresh_secs: 60,
            refresh_on_change_units: 50,
            region_km: 100.0,
            lost_sale_cost: 50.0,
            calibration_rounds: 0,
        }
    }
}

impl std::fmt::Display for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.enabled {
            return f.write_str("off");
        }
        write!(
            f,
            "on, weight {}, demand of the last {} s expected over {}, in cells of {} km, a lost sale costing its segment's unfilled penalty ({} for segments no longer configured), prices computed every {} s{}{}",
            self.weight,
            self.window_secs,
            match self.replenished_at {
                Some(at) => format!(
                    "the time left until stock is replenished at {} UTC",
                    at.format("%H:%M")
                ),
                None => format!("the next {} s", self.horizon_secs),
            },
            self.region_km,
            self.lost_sale_cost,
            self.refresh_secs,
            match self.refresh_on_change_units {
                0 => String::new(),
                n => format!(" and once a node's ATS of a sku with demand moves {n} units"),
            },
            match self.calibration_rounds {
                0 => String::new(),
                n => format!(", calibrated in {n} rounds against the optimiser and charged whole"),
            }
        )
    }
}

impl Settings {
    /// The horizon from `now`, in milliseconds: to the next `replenished_at` (a whole day at
    /// it, a minute at least), else `horizon_secs`.
    pub fn horizon_ms(&self, now: Millis) -> Millis {
        const DAY: Millis = 86_400_000;
        match self.replenished_at {
            Some(at) => {
                let at = Millis::from(chrono::Timelike::num_seconds_from_midnight(&at)) * 1000;
                match (at - now.rem_euclid(DAY)).rem_euclid(DAY) {
                    0 => DAY,
                    left => left.max(MINUTE),
                }
            }
            None => self.horizon_secs as Millis * 1000,
        }
    }

    /// Whether decisions use prices at all.
    pub fn active(&self) -> bool {
        self.enabled && self.weight > 0.0
    }
}

const KM_PER_DEGREE: f64 = 111.32;

/// A cell of the demand grid: `region_km` square at the equator, cells of one row as wide in
/// km as their latitude allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Region {
    pub row: i32,
    pub col: i32,
}

impl Region {
    pub fn of(point: &GeoPoint, region_km: f64) -> Self {
        let step = region_km / KM_PER_DEGREE;
        let row = (point.lat / step).floor() as i32;
        let center_lat = (row as f64 + 0.5) * step;
        let width = step / center_lat.to_radians().cos().max(0.01);
        let col = (point.lon / width).floor() as i32;
        Self { row, col }
    }

    /// The cell's centre.
    pub fn center(&self, region_km: f64) -> GeoPoint {
        let step = region_km / KM_PER_DEGREE;
        let lat = (self.row as f64 + 0.5) * step;
        let width = step / lat.to_radians().cos().max(0.01);
        GeoPoint {
            lat: lat.clamp(-90.0, 90.0),
            lon: ((self.col as f64 + 0.5) * width).clamp(-180.0, 180.0),
        }
    }

    /// As kept in the store: `row:col`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.row, self.col)
    }

    pub fn parse(key: &str) -> Option<Self> {
        let (row, col) = key.split_once(':')?;
        Some(Self {
            row: row.parse().ok()?,
            col: col.parse().ok()?,
        })
    }
}

/// Units of a sku asked for in a region by a segment's orders.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DemandKey {
    pub sku: String,
    pub region: Region,
    /// Whose demand it is: a unit of it no node serves costs the segment's unfilled penalty.
    pub segment: String,
}

/// What an order asked for, as demand: units per sku and region, and one order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub units: BTreeMap<DemandKey, u64>,
    pub orders: u64,
}

impl Observed {
    pub fn order(order: &crate::domain::Order, region_km: f64) -> Self {
        let region = Region::of(&order.destination, region_km);
        let mut units = BTreeMap::new();
        for l in &order.lines {
            *units
                .entry(DemandKey {
                    sku: l.sku.clone(),
                    region,
                    segment: order.segment.clone(),
                })
                .or_default() += l.quantity;
        }
        Self { units, orders: 1 }
    }
}

/// The demand of a window: units per sku and region, orders, and how much time it covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    pub units: HashMap<DemandKey, u64>,
    pub orders: u64,
    /// The time the counts cover, in milliseconds (less than the window before it has filled).
    pub covered_ms: Millis,
}

impl Demand {
    pub fn total_units(&self) -> u64 {
        self.units.values().sum()
    }
}

/// Demand counted per minute, over a sliding window: the memory store's demand log, and the
/// replay's.
#[derive(Debug, Clone, Default)]
pub struct DemandWindow {
    minutes: BTreeMap<i64, Observed>,
    first: Option<Millis>,
}

const MINUTE: Millis = 60_000;

impl DemandWindow {
    /// Counts `seen` at `now`, and forgets minutes older than `window_ms`.
    pub fn record(&mut self, now: Millis, seen: &Observed, window_ms: Millis) {
        let minute = now.div_euclid(MINUTE);
        let bucket = self.minutes.entry(minute).or_default();
        for (k, u) in &seen.units {
            *bucket.units.entry(k.clone()).or_default() += u;
        }
        bucket.orders += seen.orders;
        self.first = Some(self.first.map_or(now, |f| f.min(now)));
        let oldest = (now - window_ms).div_euclid(MINUTE);
        self.minutes = self.minutes.split_off(&oldest);
    }

    /// The demand of the last `window_ms` before `now`, counting nothing placed after `now`.
    pub fn read(&self, now: Millis, window_ms: Millis) -> Demand {
        let from = (now - window_ms).div_euclid(MINUTE);
        let to = now.div_euclid(MINUTE);
        let mut out = Demand::default();
        for (_, b) in self.minutes.range(from..=to) {
            for (k, u) in &b.units {
                *out.units.entry(k.clone()).or_default() += u;
            }
            out.orders += b.orders;
        }
        out.covered_ms = match self.first {
            Some(first) => (now - first).clamp(MINUTE, window_ms.max(MINUTE)),
            None => window_ms,
        };
        out
    }
}

/// The ATS each node had of each sku with demand when prices were computed (sku → node →
/// units): what a stock change is measured from.
pub type Basis = HashMap<String, HashMap<String, u64>>;

/// Whether `level`, a node's new level of `sku`, moved `units` or more from `basis` (a sku
/// `basis` does not name had no demand, and moves nothing; `units` 0 moves nothing).
pub fn moved(
    basis: &Basis,
    sku: &str,
    node: &str,
    level: &crate::store::StockLevel,
    units: u64,
) -> bool {
    let Some(nodes) = basis.get(sku) else {
        return false;
    };
    let before = nodes.get(node).copied().unwrap_or(0);
    units > 0 && level.ats(false).abs_diff(before) >= units
}

/// The opportunity cost of a unit of each sku at each node, from one refresh.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    /// Bumped by each refresh that publishes; 0 for none yet.
    pub version: u64,
    /// When it was computed, in epoch milliseconds.
    pub computed_at: Millis,
    /// sku → node → price of one unit, before the weight; only prices above zero.
    pub by_sku: BTreeMap<String, BTreeMap<String, f64>>,
    /// Each unit is charged its whole price (prices calibrated against the optimiser), rather
    /// than what it exceeds the cheapest holder's.
    #[serde(default)]
    pub charged_whole: bool,
}

impl Prices {
    /// The price of a unit of `sku` at `node`, before the weight.
    pub fn price(&self, sku: &str, node: &str) -> f64 {
        self.by_sku
            .get(sku)
            .and_then(|m| m.get(node))
            .copied()
            .unwrap_or(0.0)
    }

    /// [`Prices::compute`], then calibrated against the optimiser's own decisions in
    /// `settings.calibration_rounds` rounds ([`calibrate`]) and charged whole; the LP's prices
    /// alone where that is 0. Calibration starts from the LP's prices at every refresh. Demand
    /// of a segment `segments` does not name is left out of the calibration.
    #[allow(clippy::too_many_arguments)]
    pub fn calibrated(
        network: &Network,
        segments: &crate::domain::Segments,
        stock: &StockView,
        demand: &Demand,
        settings: &Settings,
        now: Millis,
        strategies: &crate::sourcing::Strategies,
        today: chrono::NaiveDate,
    ) -> Prices {
        let mut prices = Self::compute(network, segments, stock, demand, settings, now);
        if settings.calibration_rounds == 0 {
            return prices;
        }
        let orders = calibrate::expected_orders(demand, settings, now);
        let expected: Vec<calibrate::Expected> = orders
            .iter()
            .filter_map(|(order, weight)| {
                let segment = segments.get(&order.segment)?;
                let admitted = crate::sourcing::Admitted::under(order, segment, network).ok()?;
                Some(calibrate::Expected {
                    admitted,
                    weight: *weight,
                })
            })
            .collect();
        let steps = calibrate::Steps {
            rounds: settings.calibration_rounds as usize,
            theta: 0.1,
            upper: None,
        };
        let found = calibrate::calibrate(
            &expected,
            network,
            stock,
            &HashMap::new(),
            &prices.by_sku,
            steps,
            strategies,
            today,
            1,
        );
        prices.by_sku = found
            .prices
            .into_iter()
            .map(|(sku, nodes)| {
                let nodes: BTreeMap<String, f64> = nodes
                    .into_iter()
                    .map(|(n, p)| (n, (p * 100.0).round() / 100.0))
                    .filter(|(_, p)| *p > 0.0)
                    .collect();
                (sku, nodes)
            })
            .filter(|(_, nodes)| !nodes.is_empty())
            .collect();
        prices.charged_whole = true;
        prices
    }

    /// Prices of the expected `demand` over `settings.horizon_secs` against `stock`: for each
    /// sku with demand, the network LP's dual price of each node's stock. Each region's demand
    /// is split by segment, served only from the nodes the segment may use (its node kinds,
    /// allowed and excluded nodes, and maximum distance from the region's centre), a unit of it
    /// left unserved costing the segment's unfilled penalty (`settings.lost_sale_cost` for a
    /// segment `segments` does not name), so a unit is worth what the demand that would go
    /// without it loses. A parcel's fixed cost is spread over the
    /// units an order usually carries.
    pub fn compute(
        network: &Network,
        segments: &crate::domain::Segments,
        stock: &StockView,
        demand: &Demand,
        settings: &Settings,
        now: Millis,
    ) -> Prices {
        let mut by_sku: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        let scale = settings.horizon_ms(now) as f64 / demand.covered_ms.max(1) as f64;
        let units_per_order = (demand.total_units() as f64 / demand.orders.max(1) as f64).max(1.0);
        // each region's demand by segment: the units expected, what one lost costs, and the
        // segment's rules (none for a segment the rules no longer name)
        type Wanted<'s> = (Region, f64, f64, Option<&'s crate::domain::SegmentRules>);
        let mut regions: BTreeMap<&str, Vec<Wanted>> = BTreeMap::new();
        for (k, &u) in &demand.units {
            let rules = segments.get(&k.segment);
            regions.entry(k.sku.as_str()).or_default().push((
                k.region,
                u as f64 * scale,
                rules.map_or(settings.lost_sale_cost, |s| s.unfilled_penalty),
                rules,
            ));
        }
        let mut distances: HashMap<Region, std::sync::Arc<[f64]>> = HashMap::new();
        for (sku, mut wanted) in regions {
            wanted.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.total_cmp(&b.2)));
            let Some(levels) = stock.get(sku) else {
                continue;
            };
            let held: Vec<(usize, &crate::domain::Node, f64)> = network
                .nodes()
                .iter()
                .enumerate()
                .filter(|(_, n)| n.enabled && n.can_ship)
                .filter_map(|(i, n)| {
                    let ats = levels.get(&n.id)?.ats(false);
                    (ats > 0).then_some((i, n, ats as f64))
                })
                .collect();
            if held.is_empty() {
                continue;
            }
            let cost: Vec<Vec<Option<f64>>> = held
                .iter()
                .map(|&(i, n, _)| {
                    wanted
                        .iter()
                        .map(|(r, _, _, rules)| {
                            let d = distances
                                .entry(*r)
                                .or_insert_with(|| {
                                    network.distances_km(&r.center(settings.region_km))
                                })
                                .get(i)
                                .copied()
                                .unwrap_or(0.0);
                            // no arc where the segment may not use the node, or not that far
                            let barred = rules.is_some_and(|rules| {
                                rules.exclusion(n).is_some()
                                    || rules.max_distance_km.is_some_and(|max| d > max)
                            });
                            (!barred).then(|| {
                                n.cost.unit_cost(d) + n.cost.parcel_cost(d) / units_per_order
                            })
                        })
                        .collect()
                })
                .collect();
            let problem = flow::Transport {
                supply: held.iter().map(|&(_, _, a)| a).collect(),
                demand: wanted.iter().map(|&(_, d, _, _)| d).collect(),
                cost,
                lost_sale: settings.lost_sale_cost,
                lost_sale_by_region: wanted.iter().map(|&(_, _, p, _)| p).collect(),
            };
            let solved = problem.solve();
            let priced: BTreeMap<String, f64> = held
                .iter()
                .zip(&solved.price)
                .filter(|(_, p)| **p > 1e-9)
                .map(|((_, n, _), p)| (n.id.clone(), (p * 100.0).round() / 100.0))
                .collect();
            if !priced.is_empty() {
                by_sku.insert(sku.to_owned(), priced);
            }
        }
        Prices {
            version: 0,
            computed_at: now,
            by_sku,
            charged_whole: false,
        }
    }
}

#[cfg(test)]
mod tests;
