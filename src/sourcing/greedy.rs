//! The rule-list baselines the industry runs today: walk the candidate nodes in a fixed order,
//! take from each all it can give, split only where a node runs short. `nearest` orders nodes
//! by distance to the destination, `priority` by the planner's configured node priority.
//! They are what the optimiser is measured against.

use std::cmp::Ordering;

use super::{Assignment, PassedOver, Problem, Strategy};
use crate::domain::{NodeReason, StrategyKind};

/// Closest node with stock first.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nearest;

/// Nodes in their configured priority order (lower first), nearest first among equals.
#[derive(Debug, Clone, Copy, Default)]
pub struct Priority;

impl Strategy for Nearest {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Nearest
    }

    fn assign(&self, problem: &Problem<'_>) -> Assignment {
        let mut order: Vec<usize> = (0..problem.candidates.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&problem.candidates[a], &problem.candidates[b]);
            a.distance_km
                .partial_cmp(&b.distance_km)
                .unwrap_or(Ordering::Equal)
                .then_with(|| a.node.id.cmp(&b.node.id))
        });
        walk(problem, &order, self.kind())
    }
}

impl Strategy for Priority {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Priority
    }

    fn assign(&self, problem: &Problem<'_>) -> Assignment {
        let mut order: Vec<usize> = (0..problem.candidates.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&problem.candidates[a], &problem.candidates[b]);
            a.node
                .priority
                .cmp(&b.node.priority)
                .then_with(|| {
                    a.distance_km
                        .partial_cmp(&b.distance_km)
                        .unwrap_or(Ordering::Equal)
                })
                .then_with(|| a.node.id.cmp(&b.node.id))
        });
        walk(problem, &order, self.kind())
    }
}

/// Takes from each node in `order` all it can give of what is still needed.
fn walk(problem: &Problem<'_>, order: &[usize], kind: StrategyKind) -> Assignment {
    let lines = &problem.order.lines;
    let mut result = Assignment::default();

    if problem.order.ship_complete {
        let inst = problem.instance();
        let demand = inst.demand_by_sku();
        let total = inst.total_units();
        match order.iter().find(|&&c| {
            let cand = &problem.candidates[c];
            cand.capacity >= total && demand.iter().zip(&cand.ats).all(|(d, a)| d <= a)
        }) {
            Some(&c) => {
                result.units = lines
                    .iter()
                    .enumerate()
                    .map(|(l, line)| (c, l, line.quantity))
                    .collect();
                for &other in order.iter().filter(|&&o| o != c) {
                    result.passed_over.push(PassedOver {
                        candidate: other,
                        reason: NodeReason::NotNeeded,
                        detail: format!(
                            "{kind} strategy found a node that ships the whole order first"
                        ),
                        extra_cost: 0.0,
                    });
                }
            }
            None => {
                for &c in order {
                    result.passed_over.push(PassedOver {
                        candidate: c,
                        reason: NodeReason::NoStock,
                        detail: "cannot ship the whole ship-complete order".into(),
                        extra_cost: 0.0,
                    });
                }
            }
        }
        return result;
    }

    let kits = problem.kits();
    let mut kit_done = vec![false; kits.len()];
    let mut remaining: Vec<u64> = lines
        .iter()
        .map(|l| if l.group.is_some() { 0 } else { l.quantity })
        .collect();
    let max = problem.rules.max_shipments as usize;
    let mut used = 0usize;

    for &c in order {
        if kit_done.iter().all(|d| *d) && remaining.iter().all(|&r| r == 0) {
            break;
        }
        // What this node would give, worked out on copies and kept only if the node may be used.
        let mut node_left = problem.candidates[c].ats.clone();
        let mut capacity = problem.candidates[c].capacity;
        let mut node_remaining = remaining.clone();
        let mut node_kits = kit_done.clone();
        let mut took = Vec::new();
        for (k, kit) in kits.iter().enumerate() {
            if node_kits[k] {
                continue;
            }
            let mut need = vec![0u64; problem.skus.len()];
            for &l in kit {
                need[problem.line_sku[l]] += lines[l].quantity;
            }
            let units: u64 = need.iter().sum();
            if units <= capacity && need.iter().zip(&node_left).all(|(n, a)| n <= a) {
                capacity -= units;
                took.extend(kit.iter().map(|&l| (c, l, lines[l].quantity)));
                for (s, n) in need.iter().enumerate() {
                    node_left[s] -= n;
                }
                node_kits[k] = true;
            }
        }
        for (l, r) in node_remaining.iter_mut().enumerate() {
            let s = problem.line_sku[l];
            let take = (*r).min(node_left[s]).min(capacity);
            if take > 0 {
                took.push((c, l, take));
                capacity -= take;
                node_left[s] -= take;
                *r -= take;
            }
        }
        if took.is_empty() {
            continue;
        }
        if used == max {
            result.passed_over.push(PassedOver {
                candidate: c,
                reason: NodeReason::MaxShipments,
                detail: format!(
                    "segment {} allows {} shipments per order",
                    problem.rules.name, max
                ),
                extra_cost: 0.0,
            });
            continue;
        }
        used += 1;
        remaining = node_remaining;
        kit_done = node_kits;
        result.units.extend(took);
    }
    result
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use std::collections::HashMap;

    use super::*;
    use crate::domain::UnfilledPolicy;
    use crate::sourcing::Admitted;
    use crate::sourcing::tests::{network, order, rules, stock};

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
    }

    fn nodes_of(plan: &crate::domain::Plan) -> Vec<&str> {
        plan.shipments.iter().map(|s| s.node_id.as_str()).collect()
    }

    #[test]
    fn nearest_takes_the_closest_node_and_splits_only_when_short() {
        let net = network();
        let r = rules(3, UnfilledPolicy::Reject);
        let o = order(&[("1", "A", 4, None)]);
        let s = stock(&[
            ("A", "near", 3, 0),
            ("A", "mid", 10, 0),
            ("A", "far", 10, 0),
        ]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let plan = p
            .finish(StrategyKind::Nearest, &Nearest.assign(&p))
            .unwrap();
        assert_eq!(nodes_of(&plan), vec!["near", "mid"]);
        assert_eq!(plan.shipments[0].lines[0].quantity, 3);
        assert_eq!(plan.shipments[1].lines[0].quantity, 1);
        let far = plan
            .unused_nodes
            .iter()
            .find(|u| u.node_id == "far")
            .unwrap();
        assert_eq!(far.reason, NodeReason::NotNeeded);
    }

    #[test]
    fn priority_follows_the_configured_order() {
        let net = network();
        let r = rules(3, UnfilledPolicy::Reject);
        let o = order(&[("1", "A", 4, None)]);
        let s = stock(&[
            ("A", "near", 10, 0),
            ("A", "mid", 2, 0),
            ("A", "far", 10, 0),
        ]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let plan = p
            .finish(StrategyKind::Priority, &Priority.assign(&p))
            .unwrap();
        // mid (10) then far (20), never near (30)
        assert_eq!(nodes_of(&plan), vec!["mid", "far"]);
    }

    #[test]
    fn max_shipments_leaves_the_rest_unfilled_or_refuses() {
        let net = network();
        let o = order(&[("1", "A", 6, None)]);
        let s = stock(&[("A", "near", 2, 0), ("A", "mid", 2, 0), ("A", "far", 2, 0)]);
        let r = rules(2, UnfilledPolicy::Backorder);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let plan = p
            .finish(StrategyKind::Nearest, &Nearest.assign(&p))
            .unwrap();
        assert_eq!(plan.shipments.len(), 2);
        assert_eq!(plan.unfilled_units(), 2);
        let far = plan
            .unused_nodes
            .iter()
            .find(|u| u.node_id == "far")
            .unwrap();
        assert_eq!(far.reason, NodeReason::MaxShipments);
        let r = rules(2, UnfilledPolicy::Reject);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        assert!(
            p.finish(StrategyKind::Nearest, &Nearest.assign(&p))
                .is_err()
        );
    }

    #[test]
    fn kits_ship_whole_from_one_node() {
        let net = network();
        let r = rules(3, UnfilledPolicy::Reject);
        let o = order(&[
            ("1", "A", 1, Some("k")),
            ("2", "B", 1, Some("k")),
            ("3", "A", 1, None),
        ]);
        // near has A only; mid has both
        let s = stock(&[("A", "near", 5, 0), ("A", "mid", 5, 0), ("B", "mid", 5, 0)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let a = Nearest.assign(&p);
        p.check(&a).unwrap();
        let plan = p.finish(StrategyKind::Nearest, &a).unwrap();
        let mid = plan.shipments.iter().find(|s| s.node_id == "mid").unwrap();
        let kit_lines: Vec<&str> = mid.lines.iter().map(|l| l.line_id.as_str()).collect();
        assert_eq!(kit_lines, vec!["1", "2"]);
        let near = plan.shipments.iter().find(|s| s.node_id == "near").unwrap();
        assert_eq!(near.lines[0].line_id, "3");
    }

    #[test]
    fn ship_complete_uses_one_node_or_none() {
        let net = network();
        let r = rules(3, UnfilledPolicy::Backorder);
        let mut o = order(&[("1", "A", 2, None), ("2", "B", 1, None)]);
        o.ship_complete = true;
        let s = stock(&[("A", "near", 5, 0), ("A", "far", 5, 0), ("B", "far", 1, 0)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let plan = p
            .finish(StrategyKind::Nearest, &Nearest.assign(&p))
            .unwrap();
        assert_eq!(nodes_of(&plan), vec!["far"]);
        // no single node has both: a backorder segment waits for the whole order...
        let s = stock(&[("A", "near", 5, 0), ("B", "far", 1, 0)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let plan = p
            .finish(StrategyKind::Nearest, &Nearest.assign(&p))
            .unwrap();
        assert!(plan.shipments.is_empty());
        assert_eq!(plan.unfilled_units(), 3);
        // ...and a segment that refuses unfilled units has no plan
        let r = rules(3, UnfilledPolicy::Reject);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let e = p
            .finish(StrategyKind::Nearest, &Nearest.assign(&p))
            .unwrap_err();
        assert!(e.to_string().contains("ship-complete"), "{e}");
    }

    #[test]
    fn two_lines_of_one_sku_share_a_node_stock() {
        let net = network();
        let r = rules(3, UnfilledPolicy::Backorder);
        let o = order(&[("1", "A", 2, None), ("2", "A", 2, None)]);
        let s = stock(&[("A", "near", 3, 0)]);
        let admitted = Admitted::under(&o, &r, &net).unwrap();
        let p = Problem::build(&admitted, &net, &s, &HashMap::new(), today());
        let a = Nearest.assign(&p);
        p.check(&a).unwrap();
        let plan = p.finish(StrategyKind::Nearest, &a).unwrap();
        assert_eq!(plan.unfilled_units(), 1);
    }
}
