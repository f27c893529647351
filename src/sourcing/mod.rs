//! Sourcing: deciding which nodes ship which lines of an order.
//!
//! The work is split in four. [`Admitted::admit`] checks the order against the rules in force
//! (its segment, its pickup store) before any stock is read. [`Problem::build`] applies the
//! segment's rules to the network, the current stock and the nodes' remaining capacity: which
//! nodes are candidates, what each unit and parcel costs from them, how late they would
//! deliver, how much of each sku they may give, and the decision as numbers
//! ([`Problem::instance`], made once for everything that follows). A [`Strategy`] then decides
//! quantities only, on those numbers. [`Problem::finish`] turns that decision into a
//! [`Plan`]: shipments with cost and delivery date, the cost broken down, unfilled units, the
//! constraints that bound the choice, the reason every other node was not used, and the check
//! that the plan keeps the segment's rules. Every strategy is priced and explained the same
//! way.
//!
//! The file runs past 600 lines for its tests alone: the code reads in one sitting, and the
//! tests' world (`tests::network`, `rules`, `order`, `stock`) is shared by the tests of every
//! strategy, of admission and of replay.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{Days, NaiveDate};

use crate::domain::{
    CostBreakdown, Network, Node, NodeReason, Order, Plan, Refusal, SegmentRules, Shipment,
    ShipmentLine, Shortage, SolveStatus, StrategyKind, UnfilledLine, UnfilledPolicy, UnusedNode,
};
use crate::error::Error;
use crate::store::{StockLevel, StockView};

mod admission;
mod greedy;
mod instance;
pub mod optimal;
pub(crate) mod pool;
mod search;

pub use admission::Admitted;
pub use greedy::{Nearest, Priority};
pub use instance::{Instance, Units};
pub use optimal::{Backend, Optimal};

/// A node that may ship some of the order, with what it costs from there.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub node: &'a Node,
    /// To the customer, or to the pickup store for a transfer.
    pub distance_km: f64,
    /// Units the segment may take, per sku of [`Problem::skus`].
    pub ats: Vec<u64>,
    /// Units segments of a better priority keep from this one, per sku, beyond `ats`.
    pub kept: Vec<u64>,
    /// Which segments keep them, per sku, for explanations.
    pub kept_for: Vec<String>,
    /// Units the node may still ship today.
    pub capacity: u64,
    pub handling_per_unit: f64,
    pub shipping_per_unit: f64,
    pub transfer_per_unit: f64,
    pub parcel: f64,
    pub shipping_per_parcel: f64,
    /// The segment's lateness penalty for this node's parcel.
    pub lateness: f64,
    pub days: u32,
    pub days_late: u32,
    /// Ships to the pickup store, not the customer.
    pub transfer: bool,
}

impl Candidate<'_> {
    pub fn unit_cost(&self) -> f64 {
        self.handling_per_unit + self.shipping_per_unit + self.transfer_per_unit
    }

    pub fn fixed_cost(&self) -> f64 {
        self.parcel + self.shipping_per_parcel + self.lateness
    }
}

/// Look-ahead's prices of a unit per sku and node, laid out for decisions on one network: per
/// sku, (the node's place in id order, price), in that order; nodes the network does not have
/// are left out. Built once per table and network, it spares each decision the node ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodePrices(HashMap<String, Vec<(u32, f64)>>);

impl NodePrices {
    /// `table` (sku → node id → price) on `network`.
    pub fn new(table: &BTreeMap<String, BTreeMap<String, f64>>, network: &Network) -> Self {
        Self(
            table
                .iter()
                .map(|(sku, nodes)| {
                    let mut ranked: Vec<(u32, f64)> = nodes
                        .iter()
                        .filter_map(|(id, &p)| Some((network.rank(network.position(id)?), p)))
                        .collect();
                    ranked.sort_unstable_by_key(|&(rank, _)| rank);
                    (sku.clone(), ranked)
                })
                .collect(),
        )
    }

    /// The prices of `sku`, by node rank; `None` for a sku without any.
    pub fn get(&self, sku: &str) -> Option<&[(u32, f64)]> {
        self.0.get(sku).map(Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(Vec::is_empty)
    }
}

/// One sourcing decision to make: the order, its rules and its candidates.
#[derive(Debug, Clone)]
pub struct Problem<'a> {
    pub order: &'a Order,
    pub rules: &'a SegmentRules,
    pub today: NaiveDate,
    /// The order's distinct skus.
    pub skus: Vec<String>,
    /// For each order line, its index in `skus`.
    pub line_sku: Vec<usize>,
    /// Nodes that are eligible and hold some stock of the order.
    pub candidates: Vec<Candidate<'a>>,
    /// Nodes out of the running before any strategy looks, with the reason.
    pub excluded: Vec<UnusedNode>,
    /// The numbers of the order, its rules and the candidates above, made once by
    /// [`Problem::build`] for everything that reads them (so the candidates are not to change
    /// after it).
    instance: Instance,
    /// Each candidate's place among the network's nodes in id order.
    ranks: Vec<u32>,
}

/// A candidate a strategy passed over, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct PassedOver {
    pub candidate: usize,
    pub reason: NodeReason,
    pub detail: String,
    pub extra_cost: f64,
}

/// A strategy's decision: units of each line from each candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// (candidate index, line index, units), units above zero.
    pub units: Units,
    /// Why candidates were passed over, where the strategy knows better than "not needed".
    pub passed_over: Vec<PassedOver>,
    pub status: SolveStatus,
}

impl Default for Assignment {
    fn default() -> Self {
        Self {
            units: Vec::new(),
            passed_over: Vec::new(),
            status: SolveStatus::Heuristic,
        }
    }
}

/// A way of sourcing orders.
pub trait Strategy: Send + Sync {
    fn kind(&self) -> StrategyKind;

    /// Decides quantities. It must keep to the candidates' ATS and capacity, the segment's
    /// maximum shipments, kits and ship-complete; [`Problem::finish`] checks that it did.
    fn assign(&self, problem: &Problem<'_>) -> Assignment;
}

/// Every strategy, configured.
#[derive(Debug, Clone)]
pub struct Strategies {
    pub optimal: Optimal,
}

impl Strategies {
    pub fn new(backend: Backend, budget: Duration) -> Self {
        Self {
            optimal: Optimal { backend, budget },
        }
    }

    pub fn get(&self, kind: StrategyKind) -> &dyn Strategy {
        match kind {
            StrategyKind::Nearest => &Nearest,
            StrategyKind::Priority => &Priority,
            StrategyKind::Optimal => &self.optimal,
        }
    }
}

impl<'a> Problem<'a> {
    /// Applies the admitted order's segment rules to the network, the stock and the capacity
    /// already used today (units per node). What the order says was checked by admission;
    /// only a plan can be refused, in [`Problem::finish`].
    pub fn build(
        admitted: &'a Admitted<'_>,
        network: &'a Network,
        stock: &StockView,
        capacity_used: &HashMap<String, u64>,
        today: NaiveDate,
    ) -> Problem<'a> {
        let order = admitted.order();
        let rules = admitted.segment();
        let pickup = admitted.pickup();
        let skus = order.skus();
        let sku_index: HashMap<&str, usize> = skus
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        let line_sku: Vec<usize> = order
            .lines
            .iter()
            .map(|l| sku_index[l.sku.as_str()])
            .collect();
        // days the customer was promised
        let allowed_days = match order.deliver_by {
            Some(date) => date.signed_duration_since(today).num_days().max(0) as u32,
            None => rules.service_level_days,
        };

        let mut candidates = Vec::new();
        let mut ranks = Vec::new();
        let mut excluded = Vec::new();
        let to_destination = network.distances_km(&order.destination);
        let to_pickup = pickup.map(|store| network.distances_km(&store.location));
        for (at, node) in network.nodes().iter().enumerate() {
            let out = |reason, detail: String| UnusedNode {
                node_id: node.id.clone(),
                reason,
                detail,
                extra_cost: 0.0,
            };
            if !node.enabled {
                excluded.push(out(
                    NodeReason::Disabled,
                    "disabled in the network config".into(),
                ));
                continue;
            }
            if let Some(why) = rules.exclusion(node) {
                excluded.push(out(NodeReason::ExcludedByRule, why));
                continue;
            }
            let (distance_km, transfer) = match pickup {
                Some(store) if store.id == node.id => (0.0, false),
                Some(store) if !rules.allow_transfer => {
                    excluded.push(out(
                        NodeReason::ExcludedByRule,
                        format!(
                            "a pickup order is collected at {}, and segment {} allows no transfers",
                            store.id, rules.name
                        ),
                    ));
                    continue;
                }
                Some(store) if !node.can_ship => {
                    excluded.push(out(
                        NodeReason::ExcludedByRule,
                        format!("the node cannot ship a transfer to {}", store.id),
                    ));
                    continue;
                }
                Some(_) => (to_pickup.as_ref().map_or(0.0, |d| d[at]), true),
                None if !node.can_ship => {
                    excluded.push(out(
                        NodeReason::ExcludedByRule,
                        "the node does not ship to addresses".into(),
                    ));
                    continue;
                }
                None => (to_destination[at], false),
            };
            if let Some(max) = rules.max_distance_km
                && distance_km > max
            {
                excluded.push(out(
                    NodeReason::TooFar,
                    format!(
                        "{distance_km:.0} km away; segment {} ships from {max:.0} km at most",
                        rules.name
                    ),
                ));
                continue;
            }
            let levels: Vec<Option<&StockLevel>> = skus
                .iter()
                .map(|sku| stock.get(sku).and_then(|m| m.get(&node.id)))
                .collect();
            // per sku: what the segment may take, what better segments keep from it beyond
            // that, and which of them keep it, from one look at the protections
            let mut ats = Vec::with_capacity(skus.len());
            let mut kept = Vec::with_capacity(skus.len());
            let mut kept_by: Vec<Vec<&str>> = Vec::with_capacity(skus.len());
            for level in &levels {
                let (free, (units, names)) = level.map_or((0, (0, Vec::new())), |l| {
                    (l.ats(rules.use_safety_stock), rules.kept(l))
                });
                let a = free.saturating_sub(units);
                ats.push(a);
                kept.push(free - a);
                kept_by.push(names);
            }
            if ats.iter().all(|&a| a == 0) {
                let units: u64 = kept.iter().sum();
                let mut names: Vec<&str> = Vec::new();
                for n in kept_by.iter().flatten() {
                    if !names.contains(n) {
                        names.push(n);
                    }
                }
                excluded.push(out(
                    NodeReason::NoStock,
                    format!(
                        "no stock of {} available to segment {}{}",
                        skus.join(", "),
                        rules.name,
                        if units > 0 {
                            format!(": {units} unit(s) kept for {}", protecting(&names))
                        } else {
                            String::new()
                        }
                    ),
                ));
                continue;
            }
            let used = capacity_used.get(&node.id).copied().unwrap_or(0);
            let capacity = node.daily_capacity_units.saturating_sub(used);
            if capacity == 0 {
                excluded.push(out(
                    NodeReason::OverCapacity,
                    format!(
                        "its daily capacity of {} units is taken",
                        node.daily_capacity_units
                    ),
                ));
                continue;
            }
            let days = node.days_to_deliver(distance_km);
            let days_late = days.saturating_sub(allowed_days);
            ranks.push(network.rank(at));
            candidates.push(Candidate {
                node,
                distance_km,
                ats,
                kept,
                // only built where a segment keeps units, for the binding explanations
                kept_for: kept_by
                    .iter()
                    .map(|names| {
                        if names.is_empty() {
                            String::new()
                        } else {
                            protecting(names)
                        }
                    })
                    .collect(),
                capacity,
                handling_per_unit: node.cost.handling_per_unit,
                shipping_per_unit: node.cost.per_unit_km * distance_km,
                transfer_per_unit: if transfer {
                    rules.transfer_per_unit
                } else {
                    0.0
                },
                parcel: node.cost.per_parcel,
                shipping_per_parcel: node.cost.per_parcel_km * distance_km,
                lateness: rules.lateness_penalty * f64::from(days_late),
                days,
                days_late,
                transfer,
            });
        }
        let instance = numbers(order, rules, skus.len(), &line_sku, &candidates);
        Problem {
            order,
            rules,
            today,
            skus,
            line_sku,
            candidates,
            excluded,
            instance,
            ranks,
        }
    }

    /// Lines grouped into kits, in order of first appearance.
    pub fn kits(&self) -> &[Vec<usize>] {
        &self.instance.kits
    }

    /// The decision as numbers, for the strategies, the checks, the refusal and the LP
    /// export: built once, with the problem.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Checks an assignment against every hard rule; the sentence says what it breaks.
    /// Unfilled units are the segment's policy to accept or refuse, in [`Problem::finish`].
    pub fn check(&self, a: &Assignment) -> Result<(), String> {
        self.instance.check_all_but_unfilled(&a.units)
    }

    /// Prices and explains an assignment, and refuses it where the segment's rules do.
    pub fn finish(&self, kind: StrategyKind, a: &Assignment) -> Result<Plan, Error> {
        self.check(a)
            .map_err(|e| Error::Internal(format!("strategy {kind} broke a rule: {e}")))?;
        let lines = &self.order.lines;
        let mut by_node: BTreeMap<usize, BTreeMap<usize, u64>> = BTreeMap::new();
        let mut filled = vec![0u64; lines.len()];
        for &(c, l, q) in &a.units {
            *by_node.entry(c).or_default().entry(l).or_default() += q;
            filled[l] += q;
        }
        let mut cost = CostBreakdown::default();
        let mut shipments = Vec::with_capacity(by_node.len());
        for (&c, ship_lines) in &by_node {
            let cand = &self.candidates[c];
            let units = ship_lines.values().sum::<u64>() as f64;
            cost.shipping += cand.shipping_per_parcel + cand.shipping_per_unit * units;
            cost.handling += cand.handling_per_unit * units;
            cost.parcels += cand.parcel;
            cost.transfer += cand.transfer_per_unit * units;
            cost.lateness += cand.lateness;
            shipments.push(Shipment {
                node_id: cand.node.id.clone(),
                node_kind: cand.node.kind,
                lines: ship_lines
                    .iter()
                    .map(|(&l, &q)| ShipmentLine {
                        line_id: lines[l].line_id.clone(),
                        sku: lines[l].sku.clone(),
                        quantity: q,
                    })
                    .collect(),
                cost: round_cents(cand.fixed_cost() + cand.unit_cost() * units),
                distance_km: (cand.distance_km * 10.0).round() / 10.0,
                estimated_delivery: self.today + Days::new(u64::from(cand.days)),
                days_late: cand.days_late,
                transfer: cand.transfer,
            });
        }
        let unfilled: Vec<UnfilledLine> = lines
            .iter()
            .zip(&filled)
            .filter(|(line, f)| **f < line.quantity)
            .map(|(line, f)| UnfilledLine {
                line_id: line.line_id.clone(),
                sku: line.sku.clone(),
                quantity: line.quantity - f,
                promised: None,
            })
            .collect();
        let unfilled_units: u64 = unfilled.iter().map(|u| u.quantity).sum();
        if unfilled_units > 0
            && (!self.rules.unfilled.allows_unfilled()
                || (self.order.ship_complete && !shipments.is_empty()))
        {
            // what the eligible nodes hold, against what the order asks
            let shortages = self
                .instance
                .demand_by_sku()
                .iter()
                .enumerate()
                .filter_map(|(sku, &wanted)| {
                    let available: u64 = self.candidates.iter().map(|c| c.ats[sku]).sum();
                    (available < wanted).then(|| Shortage {
                        sku: self.skus[sku].clone(),
                        wanted,
                        available,
                    })
                })
                .collect();
            let unproven =
                matches!(a.status, SolveStatus::Heuristic | SolveStatus::Feasible).then_some(kind);
            return Err(Error::from(Refusal::unfillable(
                self.order, self.rules, shortages, unproven,
            )));
        }
        cost.split_penalty = shipments.len().saturating_sub(1) as f64 * self.rules.split_penalty;
        cost.unfilled = unfilled_units as f64 * self.rules.unfilled_penalty;
        let cost = CostBreakdown {
            shipping: round_cents(cost.shipping),
            handling: round_cents(cost.handling),
            parcels: round_cents(cost.parcels),
            transfer: round_cents(cost.transfer),
            split_penalty: round_cents(cost.split_penalty),
            lateness: round_cents(cost.lateness),
            unfilled: round_cents(cost.unfilled),
        };

        let mut unused_nodes = self.excluded.clone();
        for (c, cand) in self.candidates.iter().enumerate() {
            if by_node.contains_key(&c) {
                continue;
            }
            let unused = match a.passed_over.iter().find(|p| p.candidate == c) {
                Some(p) => UnusedNode {
                    node_id: cand.node.id.clone(),
                    reason: p.reason,
                    detail: p.detail.clone(),
                    extra_cost: round_cents(p.extra_cost),
                },
                None => UnusedNode {
                    node_id: cand.node.id.clone(),
                    reason: NodeReason::NotNeeded,
                    detail: format!("{kind} strategy filled the order before reaching it"),
                    extra_cost: 0.0,
                },
            };
            unused_nodes.push(unused);
        }
        let opportunity_cost: f64 = by_node
            .iter()
            .flat_map(|(&c, ship_lines)| {
                ship_lines
                    .iter()
                    .map(move |(&l, &q)| self.instance.cands[c].kept_of(self.line_sku[l], q))
            })
            .sum();
        Ok(Plan {
            binding: self.binding(&by_node),
            shipments,
            unfilled,
            total_cost: round_cents(cost.total()),
            cost,
            strategy: kind,
            status: a.status,
            unused_nodes,
            opportunity_cost: round_cents(opportunity_cost),
            plan_micros: 0,
            rules_version: String::new(),
        })
    }

    /// Prices each unit the order could take by what it costs the orders still to come:
    /// `weight` times the price `prices` gives each node and sku, per unit (a node or sku it
    /// does not name at zero; `prices` must be of the problem's network). A unit is charged
    /// what its price exceeds the cheapest price of that sku among the candidates that hold
    /// some: the prices choose between nodes (keeping a node's units for the demand only it
    /// serves well), and never make leaving a unit unfilled look cheaper than shipping it, as
    /// every node's units priced alike say only that the sku is short. The optimiser then
    /// minimises cost to serve plus these charges; the rule-list strategies ignore them.
    pub fn price_units(&mut self, weight: f64, prices: &NodePrices) {
        let Some(mut raw) = self.prices_of(weight, prices) else {
            return self.uncharge();
        };
        let skus = self.skus.len();
        for s in 0..skus {
            let floor = self
                .candidates
                .iter()
                .enumerate()
                .filter(|(_, cand)| cand.ats[s] > 0)
                .map(|(c, _)| raw[c * skus + s])
                .fold(f64::INFINITY, f64::min);
            if floor.is_finite() && floor > 0.0 {
                for c in 0..self.candidates.len() {
                    let p = &mut raw[c * skus + s];
                    *p = (*p - floor).max(0.0);
                }
            }
        }
        self.charge(&raw);
    }

    /// As [`Problem::price_units`], but each unit charged its whole price: the charges of a
    /// Lagrangian relaxation of many orders' shared stock, where a price is what a unit of a
    /// node's stock is worth to all the other orders, short sku or not.
    pub fn charge_units(&mut self, weight: f64, prices: &NodePrices) {
        match self.prices_of(weight, prices) {
            Some(raw) => self.charge(&raw),
            None => self.uncharge(),
        }
    }

    /// `weight` times the price `prices` gives each candidate, per candidate and sku
    /// (candidate-major); `None` where no sku of the order has a price, so nothing is charged.
    fn prices_of(&self, weight: f64, prices: &NodePrices) -> Option<Vec<f64>> {
        let tables: Vec<&[(u32, f64)]> = self
            .skus
            .iter()
            .map(|sku| prices.get(sku).unwrap_or_default())
            .collect();
        if tables.iter().all(|t| t.is_empty()) {
            return None;
        }
        let skus = self.skus.len();
        let mut raw = vec![0.0; self.candidates.len() * skus];
        // candidates in node id order, walked beside each sku's prices (also in that order)
        let mut by_rank: Vec<(u32, usize)> = self.ranks.iter().copied().zip(0..).collect();
        by_rank.sort_unstable();
        for (s, table) in tables.into_iter().enumerate() {
            let mut prices = table.iter().peekable();
            for &(rank, c) in &by_rank {
                while prices.next_if(|(node, _)| *node < rank).is_some() {}
                if let Some(&&(node, price)) = prices.peek()
                    && node == rank
                {
                    raw[c * skus + s] = (weight * price).max(0.0);
                }
            }
        }
        Some(raw)
    }

    /// Takes every charge off, as a table without prices for the order's skus leaves it.
    fn uncharge(&mut self) {
        for cand in &mut self.instance.cands {
            cand.kept = Vec::new();
        }
    }

    /// Charges each candidate's units of each sku it holds `charges[candidate × skus + sku]`.
    fn charge(&mut self, charges: &[f64]) {
        let skus = self.skus.len();
        for (c, cand) in self.instance.cands.iter_mut().enumerate() {
            let row = &charges[c * skus..(c + 1) * skus];
            let priced = row
                .iter()
                .zip(&cand.ats)
                .any(|(&p, &ats)| p > 0.0 && ats > 0);
            cand.kept = if priced {
                row.iter()
                    .zip(&cand.ats)
                    .map(|(&p, &ats)| if ats == 0 { 0.0 } else { p })
                    .collect()
            } else {
                Vec::new()
            };
        }
    }

    /// The constraints the plan runs up against, in words.
    fn binding(&self, by_node: &BTreeMap<usize, BTreeMap<usize, u64>>) -> Vec<String> {
        let mut out = Vec::new();
        let max = if self.order.ship_complete {
            1
        } else {
            self.rules.max_shipments as usize
        };
        if !by_node.is_empty() && by_node.len() == max {
            out.push(format!(
                "{} shipments, the most segment {} allows{}",
                max,
                self.rules.name,
                if self.order.ship_complete {
                    " (ship-complete)"
                } else {
                    ""
                }
            ));
        }
        for (&c, ship_lines) in by_node {
            let cand = &self.candidates[c];
            let mut per_sku = vec![0u64; self.skus.len()];
            for (&l, &q) in ship_lines {
                per_sku[self.line_sku[l]] += q;
            }
            for (s, &q) in per_sku.iter().enumerate() {
                if q > 0 && q == cand.ats[s] {
                    let kept = cand.kept[s];
                    out.push(format!(
                        "stock of {} at {} used up ({q} of {q} available{})",
                        self.skus[s],
                        cand.node.id,
                        if kept > 0 {
                            format!("; {kept} more kept for {}", cand.kept_for[s])
                        } else {
                            String::new()
                        }
                    ));
                }
            }
            let units: u64 = per_sku.iter().sum();
            if units == cand.capacity {
                out.push(format!(
                    "capacity of {} used up ({units} units left today)",
                    cand.node.id
                ));
            }
            if cand.days_late > 0 {
                out.push(format!(
                    "{} delivers {} day(s) late",
                    cand.node.id, cand.days_late
                ));
            }
        }
        for kit in self.kits() {
            if let Some((&c, _)) = by_node.iter().find(|(_, ls)| ls.contains_key(&kit[0])) {
                out.push(format!(
                    "kit {} ships whole from {}",
                    self.order.lines[kit[0]]
                        .group
                        .as_deref()
                        .unwrap_or_default(),
                    self.candidates[c].node.id
                ));
            }
        }
        out
    }
}

/// The segments whose protection keeps stock from a segment, for explanations.
fn protecting(names: &[&str]) -> String {
    if names.len() == 1 {
        format!("segment {}", names[0])
    } else {
        format!("segments {}", names.join(", "))
    }
}

/// Lines grouped into kits, in order of first appearance.
fn kits_of(order: &Order) -> Vec<Vec<usize>> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, line) in order.lines.iter().enumerate() {
        if let Some(g) = &line.group {
            match groups.iter_mut().find(|(name, _)| name == g) {
                Some((_, lines)) => lines.push(i),
                None => groups.push((g.clone(), vec![i])),
            }
        }
    }
    groups.into_iter().map(|(_, lines)| lines).collect()
}

/// The decision as numbers: `skus` distinct skus, `line_sku` the sku of each order line.
fn numbers(
    order: &Order,
    rules: &SegmentRules,
    skus: usize,
    line_sku: &[usize],
    candidates: &[Candidate<'_>],
) -> Instance {
    let kits = kits_of(order);
    let mut line_kit = vec![None; order.lines.len()];
    for (k, kit) in kits.iter().enumerate() {
        for &l in kit {
            line_kit[l] = Some(k);
        }
    }
    Instance {
        skus,
        cands: candidates
            .iter()
            .map(|c| instance::Cand {
                fixed: c.fixed_cost(),
                unit: c.unit_cost(),
                ats: c.ats.clone(),
                capacity: c.capacity,
                // look-ahead's charges, where a table prices the order's units
                kept: Vec::new(),
            })
            .collect(),
        lines: order
            .lines
            .iter()
            .enumerate()
            .map(|(l, line)| instance::Line {
                sku: line_sku[l],
                quantity: line.quantity,
                kit: line_kit[l],
            })
            .collect(),
        kits,
        max_shipments: rules.max_shipments as usize,
        split_penalty: rules.split_penalty,
        unfilled_penalty: (rules.unfilled != UnfilledPolicy::Reject)
            .then_some(rules.unfilled_penalty),
        ship_complete: order.ship_complete,
    }
}

fn round_cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;
    use crate::domain::{
        CostModel, DeliveryMode, GeoPoint, NodeKind, OrderLine, RefusalKind, Shortage,
        UnfilledPolicy,
    };
    use crate::store::StockLevel;

    pub fn node(id: &str, kind: NodeKind, lat: f64, lon: f64, priority: i32) -> Node {
        Node {
            id: id.into(),
            name: id.into(),
            kind,
            location: GeoPoint { lat, lon },
            city: String::new(),
            country: "ES".into(),
            enabled: true,
            can_ship: true,
            can_pickup: kind == NodeKind::Store,
            priority,
            daily_capacity_units: 1000,
            processing_days: 1,
            transit_km_per_day: 500.0,
            cost: CostModel {
                handling_per_unit: 0.5,
                per_parcel: 3.0,
                per_parcel_km: 0.004,
                per_unit_km: 0.001,
            },
        }
    }

    pub fn rules(max_shipments: u32, unfilled: UnfilledPolicy) -> SegmentRules {
        SegmentRules {
            name: "test".into(),
            priority: 1,
            node_kinds: NodeKind::ALL.into_iter().collect(),
            allowed_nodes: None,
            excluded_nodes: BTreeSet::new(),
            use_safety_stock: false,
            max_shipments,
            split_penalty: 2.0,
            max_distance_km: None,
            unfilled,
            unfilled_penalty: 10.0,
            service_level_days: 3,
            lateness_penalty: 0.0,
            allow_transfer: false,
            transfer_per_unit: 1.0,
            closed_by: Vec::new(),
            backorder_max_days: None,
            protect: crate::store::Protection::default(),
        }
    }

    pub fn order(lines: &[(&str, &str, u64, Option<&str>)]) -> Order {
        Order {
            order_id: "o-1".into(),
            segment: "test".into(),
            destination: GeoPoint {
                lat: 40.4,
                lon: -3.7,
            },
            country: "ES".into(),
            lines: lines
                .iter()
                .map(|(id, sku, q, g)| OrderLine {
                    line_id: (*id).into(),
                    sku: (*sku).into(),
                    quantity: *q,
                    group: g.map(str::to_owned),
                })
                .collect(),
            delivery: DeliveryMode::Ship,
            ship_complete: false,
            deliver_by: None,
        }
    }

    pub fn stock(rows: &[(&str, &str, u64, u64)]) -> StockView {
        let mut view = StockView::new();
        for (sku, node, on_hand, safety) in rows {
            view.entry((*sku).into()).or_default().insert(
                (*node).into(),
                StockLevel {
                    on_hand: *on_hand,
                    safety_stock: *safety,
                    ..Default::default()
                },
            );
        }
        view
    }

    /// Madrid (near), Zaragoza (mid), Barcelona (far), and a Madrid store.
    pub fn network() -> Network {
        Network::new(
            "EUR".into(),
            vec![
                node("near", NodeKind::Warehouse, 40.3, -3.7, 30),
                node("mid", NodeKind::Warehouse, 41.65, -0.88, 10),
                node("far", NodeKind::Warehouse, 41.39, 2.16, 20),
                node("shop", NodeKind::Store, 40.42, -3.70, 40),
            ],
        )
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
    }

    #[test]
    fn candidates_follow_the_rules() {
        let net = network();
        let mut r = rules(3, UnfilledPolicy::Reject);
        r.node_kinds.remove(&NodeKind::Store);
        r.max_distance_km = Some(400.0);
        let o = order(&[("1", "A", 1, None)]);
        let s = stock(&[("A", "near", 5, 0), ("A", "far", 5, 0), ("A", "shop", 5, 0)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let ids: Vec<&str> = p.candidates.iter().map(|c| c.node.id.as_str()).collect();
        assert_eq!(ids, vec!["near"]);
        let reason = |id: &str| p.excluded.iter().find(|u| u.node_id == id).unwrap().reason;
        assert_eq!(reason("mid"), NodeReason::NoStock);
        assert_eq!(reason("far"), NodeReason::TooFar);
        assert_eq!(reason("shop"), NodeReason::ExcludedByRule);
    }

    #[test]
    fn safety_stock_is_kept_unless_the_segment_may_use_it() {
        let net = network();
        let mut r = rules(3, UnfilledPolicy::Reject);
        let o = order(&[("1", "A", 1, None)]);
        let s = stock(&[("A", "near", 3, 3)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        assert!(p.candidates.is_empty());
        r.use_safety_stock = true;
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        assert_eq!(p.candidates[0].ats, vec![3]);
    }

    #[test]
    fn finish_prices_and_dates_shipments() {
        let net = network();
        let r = rules(3, UnfilledPolicy::Backorder);
        let o = order(&[("1", "A", 2, None), ("2", "B", 5, None)]);
        let s = stock(&[("A", "near", 5, 0), ("B", "far", 3, 0)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let a = Assignment {
            units: vec![(0, 0, 2), (1, 1, 3)],
            passed_over: vec![],
            status: SolveStatus::Heuristic,
        };
        let plan = p.finish(StrategyKind::Nearest, &a).unwrap();
        assert_eq!(plan.shipments.len(), 2);
        let near = &plan.shipments[0];
        let expected = net
            .get("near")
            .unwrap()
            .cost
            .parcel_cost(p.candidates[0].distance_km)
            + 2.0
                * net
                    .get("near")
                    .unwrap()
                    .cost
                    .unit_cost(p.candidates[0].distance_km);
        assert!((near.cost - expected).abs() < 0.01);
        assert_eq!(near.estimated_delivery, today() + Days::new(2));
        assert_eq!(
            plan.unfilled,
            vec![UnfilledLine {
                line_id: "2".into(),
                sku: "B".into(),
                quantity: 2,
                promised: None,
            }]
        );
        let sum: f64 = plan.shipments.iter().map(|s| s.cost).sum();
        assert!((plan.total_cost - (sum + 2.0 + 20.0)).abs() < 0.02);
    }

    #[test]
    fn unfilled_units_are_refused_where_the_segment_rejects_them() {
        let net = network();
        let r = rules(3, UnfilledPolicy::Reject);
        let o = order(&[("1", "A", 9, None)]);
        let s = stock(&[("A", "near", 5, 0)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let a = Assignment {
            units: vec![(0, 0, 5)],
            passed_over: vec![],
            status: SolveStatus::Heuristic,
        };
        let e = p.finish(StrategyKind::Nearest, &a).unwrap_err();
        assert!(
            matches!(&e, Error::Refused(r) if r.kind == RefusalKind::NotEnoughStock
                && e.to_string().contains("A wants 9, 5 available")),
            "{e:?}"
        );
    }

    /// `optimal` with time to prove every test's plan.
    fn exact() -> Optimal {
        Optimal {
            backend: Backend::Microlp,
            budget: std::time::Duration::from_secs(5),
        }
    }

    /// The refusal `optimal`'s plan for `o` meets. The rule-list strategies meet the same one,
    /// except that where stock is too spread they say only that they found no plan.
    fn refusal(o: &Order, r: &SegmentRules, s: &StockView, used: &[(&str, u64)]) -> Refusal {
        let net = network();
        let used: HashMap<String, u64> = used.iter().map(|(n, q)| ((*n).into(), *q)).collect();
        let admitted = Admitted::under(o, r, &net).unwrap();
        let p = Problem::build(&admitted, &net, s, &used, today());
        let optimal = exact();
        let strategies: [&dyn Strategy; 3] = [&Nearest, &Priority, &optimal];
        let refusals: Vec<Refusal> = strategies
            .iter()
            .map(|st| match p.finish(st.kind(), &st.assign(&p)) {
                Err(Error::Refused(r)) => *r,
                other => panic!("{}: {other:?}", st.kind()),
            })
            .collect();
        let exact = refusals[2].clone();
        for (st, r) in strategies.iter().zip(&refusals) {
            let mut expected = exact.clone();
            if exact.kind == RefusalKind::StockTooSpread && st.kind() != StrategyKind::Optimal {
                expected.kind = RefusalKind::NoPlanFound(st.kind());
            }
            assert_eq!(*r, expected, "{}", st.kind());
        }
        exact
    }

    #[test]
    fn each_kind_of_refusal_comes_from_the_situation_that_causes_it() {
        let strict = rules(3, UnfilledPolicy::Reject);
        let mut one_parcel = rules(1, UnfilledPolicy::Reject);
        one_parcel.name = "one-parcel".into();
        let four = order(&[("1", "A", 4, None)]);
        let mut whole = four.clone();
        whole.ship_complete = true;
        let two_and_two = stock(&[("A", "near", 2, 0), ("A", "far", 2, 0)]);
        let one = stock(&[("A", "near", 1, 0)]);
        let no_partial = "segment test does not allow partial fulfilment or backorders";
        let ship_complete = "the order is ship-complete: one shipment with everything, or none";

        // the nodes the segment may use hold too little
        let r = refusal(&four, &strict, &one, &[]);
        assert_eq!(r.kind, RefusalKind::NotEnoughStock);
        let short = vec![Shortage {
            sku: "A".into(),
            wanted: 4,
            available: 1,
        }];
        assert_eq!(r.shortages, short);
        assert_eq!(r.shortages[0].missing(), 3);
        assert_eq!(
            r.to_string(),
            format!(
                "no plan sources order o-1 under its rules (A wants 4, 1 available to segment test): {no_partial}"
            )
        );
        // safety stock is not available to a segment that may not use it
        let kept = stock(&[("A", "near", 9, 6)]);
        let r = refusal(&four, &strict, &kept, &[]);
        assert_eq!(
            (r.kind, r.shortages[0].available),
            (RefusalKind::NotEnoughStock, 3)
        );

        // enough in all, more parcels than the segment allows
        let r = refusal(&four, &one_parcel, &two_and_two, &[]);
        assert_eq!(r.kind, RefusalKind::StockTooSpread);
        assert!(r.shortages.is_empty());
        assert_eq!(
            r.to_string(),
            "no plan sources order o-1 under its rules (the stock exists, but no plan of at most 1 shipment(s) within node capacity and kits covers it): segment one-parcel does not allow partial fulfilment or backorders"
        );
        // enough stock at one node, not the capacity left to ship it today
        let plenty = stock(&[("A", "near", 9, 0)]);
        let r = refusal(&four, &one_parcel, &plenty, &[("near", 998)]);
        assert_eq!(r.kind, RefusalKind::StockTooSpread);

        // a ship-complete order, short
        let r = refusal(&whole, &strict, &one, &[]);
        assert_eq!(r.kind, RefusalKind::ShipCompleteNotEnoughStock);
        assert_eq!(r.shortages, short);
        assert_eq!(
            r.to_string(),
            format!(
                "no plan sources order o-1 under its rules (A wants 4, 1 available to segment test): {ship_complete}"
            )
        );

        // a ship-complete order, whose stock no one node holds whole, though the segment
        // would take three parcels
        let r = refusal(&whole, &strict, &two_and_two, &[]);
        assert_eq!(r.kind, RefusalKind::ShipCompleteTooSpread);
        assert_eq!(
            r.to_string(),
            format!(
                "no plan sources order o-1 under its rules (the stock exists, but no plan of at most 1 shipment(s) within node capacity and kits covers it): {ship_complete}"
            )
        );
        // with both parcels allowed and no ship-complete, it is planned
        let net = network();
        let admitted = Admitted::under(&four, &strict, &net).unwrap();
        let p = Problem::build(&admitted, &net, &two_and_two, &HashMap::new(), today());
        assert!(p.finish(StrategyKind::Nearest, &Nearest.assign(&p)).is_ok());
        // a pickup store the segment may not use is refused on admission, before any stock
        // is read: `admission::tests`
    }

    #[test]
    fn look_ahead_charges_a_unit_what_its_price_exceeds_the_cheapest_holder_s() {
        let net = network();
        let backorder = rules(3, UnfilledPolicy::Backorder);
        let two = order(&[("1", "A", 2, None)]);
        let s = stock(&[("A", "near", 2, 0), ("A", "far", 2, 0)]);
        let admitted = Admitted::under(&two, &backorder, &net).unwrap();
        let plain = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let before = plain
            .finish(StrategyKind::Optimal, &exact().assign(&plain))
            .unwrap();
        assert_eq!(before.shipments[0].node_id, "near");
        // every holder priced alike, far above the penalty: the sku is short everywhere, which
        // is no reason to leave units unfilled; the plan is as without prices
        let mut alike = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        // the same prices for every sku
        let table = |prices: &[(&str, f64)]| -> NodePrices {
            let nodes: BTreeMap<String, f64> =
                prices.iter().map(|&(n, p)| (n.to_owned(), p)).collect();
            NodePrices::new(&BTreeMap::from([("A".to_owned(), nodes)]), &net)
        };
        let every = table(&[("far", 500.0), ("mid", 500.0), ("near", 500.0)]);
        alike.price_units(1.0, &every);
        assert!(alike.instance().cands.iter().all(|c| c.kept.is_empty()));
        let plan = alike
            .finish(StrategyKind::Optimal, &exact().assign(&alike))
            .unwrap();
        assert_eq!(plan.shipments, before.shipments);
        assert_eq!(plan.opportunity_cost, 0.0);
        // near priced 30 above far: its units are kept, and the order ships from far
        let mut kept = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let dearer_near = table(&[("far", 250.0), ("mid", 250.0), ("near", 265.0)]);
        kept.price_units(2.0, &dearer_near);
        let plan = kept
            .finish(StrategyKind::Optimal, &exact().assign(&kept))
            .unwrap();
        assert_eq!(plan.shipments.len(), 1);
        assert_eq!(plan.shipments[0].node_id, "far");
        assert_eq!(plan.unfilled_units(), 0);
        let near = plan
            .unused_nodes
            .iter()
            .find(|u| u.node_id == "near")
            .unwrap();
        assert!(
            near.detail.starts_with("kept for later demand: +60.00"),
            "{near:?}"
        );
        // charged again from a table that prices none of the order's skus (as calibration
        // does each round): the earlier charges are taken off, not left in place
        assert!(kept.instance().cands.iter().any(|c| !c.kept.is_empty()));
        kept.charge_units(1.0, &NodePrices::new(&BTreeMap::new(), &net));
        assert!(kept.instance().cands.iter().all(|c| c.kept.is_empty()));
        // a node that holds none of the sku is no candidate, and its price no floor: the
        // holders' prices alike, nothing is charged
        let mut one = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let cheap_mid = table(&[("far", 7.0), ("near", 7.0)]);
        one.price_units(1.0, &cheap_mid);
        assert!(one.candidates.iter().all(|c| c.node.id != "mid"));
        assert!(one.instance().cands.iter().all(|c| c.kept.is_empty()));
    }

    #[test]
    fn a_rule_list_strategy_that_finds_no_plan_says_so_rather_than_blaming_the_stock() {
        let net = network();
        let mut one_parcel = rules(1, UnfilledPolicy::Reject);
        one_parcel.name = "one-parcel".into();
        let four = order(&[("1", "A", 4, None)]);
        // near and mid hold half each, far all of it: nearest starts at near, priority at mid,
        // and both run out of parcels; one parcel from far ships everything
        let s = stock(&[("A", "near", 2, 0), ("A", "mid", 2, 0), ("A", "far", 4, 0)]);
        let admitted = Admitted::under(&four, &one_parcel, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let optimal = exact();
        let plan = p
            .finish(StrategyKind::Optimal, &optimal.assign(&p))
            .unwrap();
        assert_eq!(plan.shipments.len(), 1);
        assert_eq!(plan.shipments[0].node_id, "far");
        for st in [&Nearest as &dyn Strategy, &Priority] {
            let Err(Error::Refused(r)) = p.finish(st.kind(), &st.assign(&p)) else {
                panic!("{} planned it", st.kind());
            };
            assert_eq!(r.kind, RefusalKind::NoPlanFound(st.kind()));
            assert!(r.shortages.is_empty());
            assert_eq!(
                r.to_string(),
                format!(
                    "no plan sources order o-1 under its rules (the stock exists, but strategy {} found no plan of at most 1 shipment(s) within node capacity and kits that covers it; it tries nodes in its order, not every plan): segment one-parcel does not allow partial fulfilment or backorders",
                    st.kind()
                )
            );
        }
    }

    #[test]
    fn check_catches_broken_assignments() {
        let net = network();
        let r = rules(1, UnfilledPolicy::Backorder);
        let o = order(&[("1", "A", 2, Some("kit")), ("2", "B", 1, Some("kit"))]);
        let s = stock(&[
            ("A", "near", 5, 0),
            ("B", "near", 5, 0),
            ("A", "far", 5, 0),
            ("B", "far", 1, 0),
        ]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let over_ats = Assignment {
            units: vec![(0, 0, 6)],
            passed_over: vec![],
            status: SolveStatus::Heuristic,
        };
        assert!(p.check(&over_ats).is_err());
        let split_kit = Assignment {
            units: vec![(0, 0, 2), (1, 1, 1)],
            passed_over: vec![],
            status: SolveStatus::Heuristic,
        };
        assert!(
            p.check(&split_kit).unwrap_err().contains("shipments")
                || p.check(&split_kit).unwrap_err().contains("kit")
        );
        let partial_kit = Assignment {
            units: vec![(0, 0, 2)],
            passed_over: vec![],
            status: SolveStatus::Heuristic,
        };
        assert!(p.check(&partial_kit).unwrap_err().contains("kit"));
        let whole = Assignment {
            units: vec![(0, 0, 2), (0, 1, 1)],
            passed_over: vec![],
            status: SolveStatus::Heuristic,
        };
        assert!(p.check(&whole).is_ok());
    }

    #[test]
    fn pickup_orders_source_only_from_the_pickup_store() {
        let net = network();
        let r = rules(3, UnfilledPolicy::Reject);
        let mut o = order(&[("1", "A", 1, None)]);
        o.delivery = DeliveryMode::Pickup {
            node_id: "shop".into(),
        };
        let s = stock(&[("A", "near", 5, 0), ("A", "shop", 1, 0)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        assert_eq!(p.candidates.len(), 1);
        assert_eq!(p.candidates[0].distance_km, 0.0);
        o.delivery = DeliveryMode::Pickup {
            node_id: "near".into(),
        };
        let e = Admitted::under(&o, &r, &net).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument { ref field, .. } if field == "order.pickup_node_id")
        );
    }

    #[test]
    fn pickup_transfers_come_from_other_nodes_only_where_the_segment_allows() {
        let net = network();
        let mut r = rules(3, UnfilledPolicy::Reject);
        let mut o = order(&[("1", "A", 2, None)]);
        o.delivery = DeliveryMode::Pickup {
            node_id: "shop".into(),
        };
        // the pickup store has none; the Madrid warehouse next door has plenty
        let s = stock(&[("A", "near", 5, 0)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        assert!(
            p.candidates.is_empty(),
            "no transfers without allow_transfer"
        );
        r.allow_transfer = true;
        r.transfer_per_unit = 0.75;
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let near = &p.candidates[0];
        assert_eq!(near.node.id, "near");
        assert!(near.transfer);
        let to_store = net
            .get("near")
            .unwrap()
            .location
            .distance_km(&net.get("shop").unwrap().location);
        assert!(
            (near.distance_km - to_store).abs() < 1e-9,
            "priced to the store, not the customer"
        );
        let optimal = exact();
        let plan = p
            .finish(StrategyKind::Optimal, &optimal.assign(&p))
            .unwrap();
        assert_eq!(plan.shipments.len(), 1);
        assert!(plan.shipments[0].transfer);
        assert_eq!(plan.cost.transfer, 1.5);
    }

    #[test]
    fn lateness_counts_against_the_deadline_or_the_service_level() {
        let net = network();
        let mut r = rules(3, UnfilledPolicy::Reject);
        r.lateness_penalty = 5.0;
        r.service_level_days = 5;
        let mut o = order(&[("1", "A", 1, None)]);
        // far (Barcelona) is about 505 km from Madrid: 1 processing day + 2 transit days
        let s = stock(&[("A", "far", 5, 0)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        assert_eq!((p.candidates[0].days, p.candidates[0].days_late), (3, 0));
        o.deliver_by = Some(today() + Days::new(1));
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        assert_eq!(p.candidates[0].days_late, 2);
        let a = Assignment {
            units: vec![(0, 0, 1)],
            passed_over: vec![],
            status: SolveStatus::Heuristic,
        };
        let plan = p.finish(StrategyKind::Nearest, &a).unwrap();
        assert_eq!(plan.shipments[0].days_late, 2);
        assert_eq!(plan.cost.lateness, 10.0);
        assert!(
            plan.binding.iter().any(|b| b.contains("2 day(s) late")),
            "{:?}",
            plan.binding
        );
    }
}
