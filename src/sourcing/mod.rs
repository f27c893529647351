//! Sourcing: deciding which nodes ship which lines of an order.
//!
//! The work is split in three. [`Problem::build`] applies the segment's rules to the network
//! and the current stock: which nodes are candidates, what each unit and parcel costs from
//! them, how much of each sku they may give. A [`Strategy`] then only decides quantities.
//! [`Problem::finish`] turns that decision into a [`Plan`]: shipments with cost and delivery
//! date, unfilled units, the reason every other node was not used, and the check that the plan
//! keeps the segment's rules. Every strategy is priced and explained the same way.

use std::collections::{BTreeMap, HashMap};

use chrono::{Days, NaiveDate};

use crate::domain::{
    DeliveryMode, Network, Node, NodeReason, Order, Plan, SegmentRules, Shipment, ShipmentLine,
    StrategyKind, UnfilledLine, UnusedNode,
};
use crate::error::Error;
use crate::store::StockView;

pub mod greedy;

pub use greedy::{Nearest, Priority};

/// A node that may ship some of the order.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub node: &'a Node,
    pub distance_km: f64,
    /// Cost of each unit shipped from here.
    pub unit_cost: f64,
    /// Fixed cost of the parcel, paid once if the node ships anything.
    pub parcel_cost: f64,
    /// Units the segment may take, per sku of [`Problem::skus`].
    pub ats: Vec<u64>,
}

/// One sourcing decision to make: the order, its rules and its candidates.
#[derive(Debug, Clone)]
pub struct Problem<'a> {
    pub order: &'a Order,
    pub rules: &'a SegmentRules,
    /// The order's distinct skus.
    pub skus: Vec<String>,
    /// For each order line, its index in `skus`.
    pub line_sku: Vec<usize>,
    /// Nodes that are eligible and hold some stock of the order.
    pub candidates: Vec<Candidate<'a>>,
    /// Nodes out of the running before any strategy looks, with the reason.
    pub excluded: Vec<UnusedNode>,
}

/// A strategy's decision: units of each line from each candidate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assignment {
    /// (candidate index, line index, units), units above zero.
    pub units: Vec<(usize, usize, u64)>,
    /// Why candidates were passed over, where the strategy knows better than "not needed".
    pub passed_over: Vec<(usize, NodeReason, String)>,
}

/// A way of sourcing orders.
pub trait Strategy: Send + Sync {
    fn kind(&self) -> StrategyKind;

    /// Decides quantities. It must keep to the candidates' ATS, the segment's maximum
    /// shipments, kits and ship-complete; [`Problem::finish`] checks that it did.
    fn assign(&self, problem: &Problem<'_>) -> Assignment;
}

/// The strategy for a kind.
pub fn strategy(kind: StrategyKind) -> &'static dyn Strategy {
    match kind {
        StrategyKind::Nearest => &Nearest,
        StrategyKind::Priority => &Priority,
    }
}

impl<'a> Problem<'a> {
    /// Applies the segment's rules to the network and the stock for this order.
    pub fn build(
        order: &'a Order,
        rules: &'a SegmentRules,
        network: &'a Network,
        stock: &StockView,
    ) -> Result<Problem<'a>, Error> {
        let skus = order.skus();
        let sku_index: HashMap<&str, usize> = skus
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        let line_sku = order
            .lines
            .iter()
            .map(|l| sku_index[l.sku.as_str()])
            .collect();
        let pickup = match &order.delivery {
            DeliveryMode::Pickup { node_id } => {
                let node = network.get(node_id).ok_or_else(|| {
                    Error::invalid(
                        "order.pickup_node_id",
                        format!("no node {node_id:?} in the network"),
                    )
                })?;
                if !node.can_pickup {
                    return Err(Error::invalid(
                        "order.pickup_node_id",
                        format!("node {node_id:?} does not serve pickups"),
                    ));
                }
                Some(node)
            }
            DeliveryMode::Ship => None,
        };

        let mut candidates = Vec::new();
        let mut excluded = Vec::new();
        for node in network.nodes() {
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
            let distance_km = match pickup {
                Some(store) if store.id != node.id => {
                    excluded.push(out(
                        NodeReason::ExcludedByRule,
                        format!("a pickup order is collected at {}", store.id),
                    ));
                    continue;
                }
                Some(_) => 0.0,
                None => {
                    if !node.can_ship {
                        excluded.push(out(
                            NodeReason::ExcludedByRule,
                            "the node does not ship to addresses".into(),
                        ));
                        continue;
                    }
                    node.location.distance_km(&order.destination)
                }
            };
            if let Some(max) = rules.max_distance_km
                && pickup.is_none()
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
            let ats: Vec<u64> = skus
                .iter()
                .map(|sku| {
                    stock
                        .get(sku)
                        .and_then(|m| m.get(&node.id))
                        .map(|l| l.ats(rules.use_safety_stock))
                        .unwrap_or(0)
                })
                .collect();
            if ats.iter().all(|&a| a == 0) {
                excluded.push(out(
                    NodeReason::NoStock,
                    format!(
                        "no stock of {} available to segment {}",
                        skus.join(", "),
                        rules.name
                    ),
                ));
                continue;
            }
            candidates.push(Candidate {
                node,
                distance_km,
                unit_cost: node.cost.unit_cost(distance_km),
                parcel_cost: node.cost.parcel_cost(distance_km),
                ats,
            });
        }
        if let Some(store) = pickup
            && rules.exclusion(store).is_some()
        {
            return Err(Error::FailedPrecondition(format!(
                "segment {} may not use pickup store {}: {}",
                rules.name,
                store.id,
                rules.exclusion(store).unwrap_or_default()
            )));
        }
        Ok(Problem {
            order,
            rules,
            skus,
            line_sku,
            candidates,
            excluded,
        })
    }

    /// Units of each sku the order asks for.
    pub fn demand_by_sku(&self) -> Vec<u64> {
        let mut demand = vec![0; self.skus.len()];
        for (line, &sku) in self.order.lines.iter().zip(&self.line_sku) {
            demand[sku] += line.quantity;
        }
        demand
    }

    /// Lines grouped into kits: group name to line indexes, in order of first appearance.
    pub fn kits(&self) -> Vec<Vec<usize>> {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, line) in self.order.lines.iter().enumerate() {
            if let Some(g) = &line.group {
                match groups.iter_mut().find(|(name, _)| name == g) {
                    Some((_, lines)) => lines.push(i),
                    None => groups.push((g.clone(), vec![i])),
                }
            }
        }
        groups.into_iter().map(|(_, lines)| lines).collect()
    }

    /// Checks an assignment against every hard rule; the sentence says what it breaks.
    pub fn check(&self, a: &Assignment) -> Result<(), String> {
        let lines = &self.order.lines;
        let mut per_line = vec![0u64; lines.len()];
        let mut taken: HashMap<(usize, usize), u64> = HashMap::new();
        let mut line_nodes: Vec<Vec<usize>> = vec![Vec::new(); lines.len()];
        for &(c, l, q) in &a.units {
            if c >= self.candidates.len() || l >= lines.len() || q == 0 {
                return Err(format!("assignment ({c}, {l}, {q}) is out of range"));
            }
            per_line[l] += q;
            *taken.entry((c, self.line_sku[l])).or_default() += q;
            if !line_nodes[l].contains(&c) {
                line_nodes[l].push(c);
            }
        }
        for (l, line) in lines.iter().enumerate() {
            if per_line[l] > line.quantity {
                return Err(format!(
                    "line {} gets {} of {}",
                    line.line_id, per_line[l], line.quantity
                ));
            }
        }
        for (&(c, s), &q) in &taken {
            if q > self.candidates[c].ats[s] {
                return Err(format!(
                    "{} units of {} from {} exceed its ATS {}",
                    q, self.skus[s], self.candidates[c].node.id, self.candidates[c].ats[s]
                ));
            }
        }
        let used: std::collections::BTreeSet<usize> = a.units.iter().map(|u| u.0).collect();
        if used.len() > self.rules.max_shipments as usize {
            return Err(format!(
                "{} shipments, above the segment's maximum of {}",
                used.len(),
                self.rules.max_shipments
            ));
        }
        for kit in self.kits() {
            let nodes: std::collections::BTreeSet<usize> = kit
                .iter()
                .flat_map(|&l| line_nodes[l].iter().copied())
                .collect();
            let complete = kit.iter().all(|&l| per_line[l] == lines[l].quantity);
            let empty = kit.iter().all(|&l| per_line[l] == 0);
            if !(empty || (complete && nodes.len() == 1)) {
                return Err(format!(
                    "kit {} does not ship whole from one node",
                    lines[kit[0]].group.as_deref().unwrap_or_default()
                ));
            }
        }
        if self.order.ship_complete {
            let complete = lines
                .iter()
                .enumerate()
                .all(|(l, line)| per_line[l] == line.quantity);
            if !a.units.is_empty() && (used.len() != 1 || !complete) {
                return Err("a ship-complete order must ship whole in one shipment".into());
            }
        }
        Ok(())
    }

    /// Prices and explains an assignment, and refuses it where the segment's rules do.
    pub fn finish(
        &self,
        kind: StrategyKind,
        a: &Assignment,
        today: NaiveDate,
    ) -> Result<Plan, Error> {
        self.check(a)
            .map_err(|e| Error::Internal(format!("strategy {kind} broke a rule: {e}")))?;
        let lines = &self.order.lines;
        let mut by_node: BTreeMap<usize, Vec<(usize, u64)>> = BTreeMap::new();
        let mut filled = vec![0u64; lines.len()];
        for &(c, l, q) in &a.units {
            by_node.entry(c).or_default().push((l, q));
            filled[l] += q;
        }
        let mut shipments = Vec::with_capacity(by_node.len());
        for (&c, units) in &by_node {
            let cand = &self.candidates[c];
            let mut ship_lines: BTreeMap<usize, u64> = BTreeMap::new();
            for &(l, q) in units {
                *ship_lines.entry(l).or_default() += q;
            }
            let total_units: u64 = ship_lines.values().sum();
            let days = cand.node.days_to_deliver(cand.distance_km);
            shipments.push(Shipment {
                node_id: cand.node.id.clone(),
                node_kind: cand.node.kind,
                lines: ship_lines
                    .into_iter()
                    .map(|(l, q)| ShipmentLine {
                        line_id: lines[l].line_id.clone(),
                        sku: lines[l].sku.clone(),
                        quantity: q,
                    })
                    .collect(),
                cost: round_cents(cand.parcel_cost + cand.unit_cost * total_units as f64),
                distance_km: (cand.distance_km * 10.0).round() / 10.0,
                estimated_delivery: today + Days::new(u64::from(days)),
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
            })
            .collect();
        let unfilled_units: u64 = unfilled.iter().map(|u| u.quantity).sum();
        if unfilled_units > 0
            && (!self.rules.unfilled.allows_unfilled() || self.order.ship_complete)
        {
            let short: Vec<String> = unfilled
                .iter()
                .map(|u| format!("line {} ({}) short by {}", u.line_id, u.sku, u.quantity))
                .collect();
            let why = if self.order.ship_complete {
                "the order is ship-complete and no single eligible node can ship all of it"
                    .to_owned()
            } else {
                format!(
                    "segment {} does not allow partial fulfilment or backorders",
                    self.rules.name
                )
            };
            return Err(Error::FailedPrecondition(format!(
                "no plan sources order {} under its rules ({}): {}",
                self.order.order_id,
                short.join("; "),
                why
            )));
        }
        let split = shipments.len().saturating_sub(1) as f64 * self.rules.split_penalty;
        let total_cost = shipments.iter().map(|s| s.cost).sum::<f64>()
            + split
            + unfilled_units as f64 * self.rules.unfilled_penalty;

        let mut unused_nodes = self.excluded.clone();
        for (c, cand) in self.candidates.iter().enumerate() {
            if by_node.contains_key(&c) {
                continue;
            }
            let (reason, detail) = a
                .passed_over
                .iter()
                .find(|p| p.0 == c)
                .map(|p| (p.1, p.2.clone()))
                .unwrap_or_else(|| {
                    (
                        NodeReason::NotNeeded,
                        format!("{kind} strategy filled the order before reaching it"),
                    )
                });
            unused_nodes.push(UnusedNode {
                node_id: cand.node.id.clone(),
                reason,
                detail,
                extra_cost: 0.0,
            });
        }
        Ok(Plan {
            shipments,
            unfilled,
            total_cost: round_cents(total_cost),
            strategy: kind,
            unused_nodes,
            plan_micros: 0,
        })
    }
}

fn round_cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::{CostModel, GeoPoint, NodeKind, OrderLine, UnfilledPolicy};
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
        let p = Problem::build(&o, &r, &net, &s).unwrap();
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
        let p = Problem::build(&o, &r, &net, &s).unwrap();
        assert!(p.candidates.is_empty());
        r.use_safety_stock = true;
        let p = Problem::build(&o, &r, &net, &s).unwrap();
        assert_eq!(p.candidates[0].ats, vec![3]);
    }

    #[test]
    fn finish_prices_and_dates_shipments() {
        let net = network();
        let r = rules(3, UnfilledPolicy::Backorder);
        let o = order(&[("1", "A", 2, None), ("2", "B", 5, None)]);
        let s = stock(&[("A", "near", 5, 0), ("B", "far", 3, 0)]);
        let p = Problem::build(&o, &r, &net, &s).unwrap();
        let a = Assignment {
            units: vec![(0, 0, 2), (1, 1, 3)],
            passed_over: vec![],
        };
        let plan = p.finish(StrategyKind::Nearest, &a, today()).unwrap();
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
                quantity: 2
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
        let p = Problem::build(&o, &r, &net, &s).unwrap();
        let a = Assignment {
            units: vec![(0, 0, 5)],
            passed_over: vec![],
        };
        let e = p.finish(StrategyKind::Nearest, &a, today()).unwrap_err();
        assert!(
            matches!(&e, Error::FailedPrecondition(m) if m.contains("line 1 (A) short by 4")),
            "{e:?}"
        );
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
        let p = Problem::build(&o, &r, &net, &s).unwrap();
        let over_ats = Assignment {
            units: vec![(0, 0, 6)],
            passed_over: vec![],
        };
        assert!(p.check(&over_ats).is_err());
        let split_kit = Assignment {
            units: vec![(0, 0, 2), (1, 1, 1)],
            passed_over: vec![],
        };
        assert!(
            p.check(&split_kit).unwrap_err().contains("shipments")
                || p.check(&split_kit).unwrap_err().contains("kit")
        );
        let partial_kit = Assignment {
            units: vec![(0, 0, 2)],
            passed_over: vec![],
        };
        assert!(p.check(&partial_kit).unwrap_err().contains("kit"));
        let whole = Assignment {
            units: vec![(0, 0, 2), (0, 1, 1)],
            passed_over: vec![],
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
        let p = Problem::build(&o, &r, &net, &s).unwrap();
        assert_eq!(p.candidates.len(), 1);
        assert_eq!(p.candidates[0].distance_km, 0.0);
        o.delivery = DeliveryMode::Pickup {
            node_id: "near".into(),
        };
        let e = Problem::build(&o, &r, &net, &s).unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument { ref field, .. } if field == "order.pickup_node_id")
        );
    }
}
