//! Low-stock alerts: thresholds from `alerts.toml`, and what a sku's levels say of them.
//!
//! Three kinds of watch, each a state per sku that is either low or not:
//! - a node's ATS against a node threshold: the reorder point the feed set for the node and sku,
//!   else the most specific rule (one naming the node, then one naming its kind, then one for
//!   every node; among rules as specific, the first);
//! - the network's ATS as a segment sees it (its nodes, its use of safety stock, what better
//!   segments keep from it) against a
//!   network threshold;
//! - out of stock: the network's ATS for a segment at 0, for every segment, with no rule.
//!
//! A state turns low when the ATS falls to or below the threshold, and back when it rises above
//! the threshold plus the hysteresis, so a level bouncing on the line does not flood. Turning is
//! decided and reported by the store in one atomic step, so each crossing is reported once
//! however many replicas look.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::{Network, Node, NodeKind, Segments};
use crate::store::StockLevel;

use super::EventKind;

/// A pattern over sku ids: `*` stands for any run of characters, `?` for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, text: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let t: Vec<char> = text.chars().collect();
        // iterative match with one backtrack point per star
        let (mut i, mut j) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while j < t.len() {
            if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
                i += 1;
                j += 1;
            } else if i < p.len() && p[i] == '*' {
                star = Some((i, j));
                i += 1;
            } else if let Some((si, sj)) = star {
                i = si + 1;
                j = sj + 1;
                star = Some((si, sj + 1));
            } else {
                return false;
            }
        }
        p[i..].iter().all(|&c| c == '*')
    }
}

/// Which nodes a node threshold covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeScope {
    All,
    Kind(NodeKind),
    Node(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeThreshold {
    pub sku: Glob,
    pub scope: NodeScope,
    pub units: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkThreshold {
    pub sku: Glob,
    /// None: every segment.
    pub segment: Option<String>,
    pub units: u64,
}

/// The thresholds in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertRules {
    pub nodes: Vec<NodeThreshold>,
    pub network: Vec<NetworkThreshold>,
    /// Units above the threshold the ATS must rise past for a low state to end.
    pub hysteresis: u64,
}

impl AlertRules {
    /// The threshold of a node's ATS of a sku: the most specific rule, the first among equals.
    pub fn node_threshold(&self, sku: &str, node_id: &str, kind: NodeKind) -> Option<u64> {
        let rank = |t: &NodeThreshold| match &t.scope {
            NodeScope::Node(n) if n == node_id => Some(0),
            NodeScope::Kind(k) if *k == kind => Some(1),
            NodeScope::All => Some(2),
            _ => None,
        };
        self.nodes
            .iter()
            .filter(|t| t.sku.matches(sku))
            .filter_map(|t| rank(t).map(|r| (r, t.units)))
            .min_by_key(|(r, _)| *r)
            .map(|(_, units)| units)
    }

    /// The threshold in force for a node's ATS of a sku: the reorder point the feed set for the
    /// node and sku, else [`Self::node_threshold`].
    pub fn threshold_at(&self, sku: &str, node: &Node, level: Option<&StockLevel>) -> Option<u64> {
        level
            .and_then(|l| l.reorder_point)
            .or_else(|| self.node_threshold(sku, &node.id, node.kind))
    }

    /// The threshold of the network's ATS of a sku as a segment sees it: a rule naming the
    /// segment, else one for every segment; the first among equals.
    pub fn network_threshold(&self, sku: &str, segment: &str) -> Option<u64> {
        let named = self
            .network
            .iter()
            .find(|t| t.segment.as_deref() == Some(segment) && t.sku.matches(sku));
        named
            .or_else(|| {
                self.network
                    .iter()
                    .find(|t| t.segment.is_none() && t.sku.matches(sku))
            })
            .map(|t| t.units)
    }
}

/// One state to look at: where it is kept, what it is about, and the figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertCheck {
    /// The state's name within the sku: `n:NODE`, `t:SEGMENT` (network threshold) or
    /// `o:SEGMENT` (out of stock).
    pub field: String,
    /// The node of a node threshold, else empty.
    pub node_id: String,
    /// The segment of a network threshold or of out of stock, else empty.
    pub segment: String,
    pub ats: u64,
    /// None: no threshold applies any more (a reorder point removed, a rule changed), so a low
    /// state ends, and none begins.
    pub threshold: Option<u64>,
    pub hysteresis: u64,
    /// Reported when the state turns low, and when it ends.
    pub low: EventKind,
    pub recovered: EventKind,
}

impl AlertCheck {
    /// A node's ATS against its threshold.
    pub fn node(node_id: &str, ats: u64, threshold: u64, hysteresis: u64) -> Self {
        Self {
            field: format!("n:{node_id}"),
            node_id: node_id.to_owned(),
            segment: String::new(),
            ats,
            threshold: Some(threshold),
            hysteresis,
            low: EventKind::LowStock,
            recovered: EventKind::StockRecovered,
        }
    }

    /// A node's ATS where no threshold applies: ends a low state left from one that did.
    pub fn unwatched_node(node_id: &str, ats: u64) -> Self {
        Self {
            threshold: None,
            ..Self::node(node_id, ats, 0, 0)
        }
    }

    /// The network's ATS as a segment sees it, against a threshold.
    pub fn network(segment: &str, ats: u64, threshold: u64, hysteresis: u64) -> Self {
        Self {
            field: format!("t:{segment}"),
            node_id: String::new(),
            segment: segment.to_owned(),
            ats,
            threshold: Some(threshold),
            hysteresis,
            low: EventKind::LowStock,
            recovered: EventKind::StockRecovered,
        }
    }

    /// The network's ATS as a segment sees it, out of stock at 0.
    pub fn out_of_stock(segment: &str, ats: u64) -> Self {
        Self {
            field: format!("o:{segment}"),
            node_id: String::new(),
            segment: segment.to_owned(),
            ats,
            threshold: Some(0),
            hysteresis: 0,
            low: EventKind::OutOfStock,
            recovered: EventKind::BackInStock,
        }
    }

    /// The state after this check, from the state before (None: never looked at, as not
    /// low), and what to report of the change.
    pub fn next(&self, low_before: Option<bool>) -> (bool, Option<EventKind>) {
        let was_low = low_before.unwrap_or(false);
        let Some(threshold) = self.threshold else {
            return if was_low {
                (false, Some(self.recovered))
            } else {
                (false, None)
            };
        };
        if !was_low && self.ats <= threshold {
            (true, Some(self.low))
        } else if was_low && self.ats > threshold.saturating_add(self.hysteresis) {
            (false, Some(self.recovered))
        } else {
            (was_low, None)
        }
    }
}

/// How long a replica trusts the state it last saw of an alert: within it, a check that cannot
/// turn that state is not sent to the store. Another replica may turn the state meanwhile; the
/// replica that turned it knows, and past this long every replica asks the store again.
pub const KNOWN_FOR: Duration = Duration::from_secs(10);

/// The alert states this replica last saw, so that only checks that may turn one go to the
/// store: most changes of a sku cross nothing.
pub struct Known(moka::sync::Cache<(String, String), bool>);

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Known")
            .field("entries", &self.0.entry_count())
            .finish()
    }
}

impl Default for Known {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(KNOWN_FOR)
                .build(),
        )
    }
}

impl Known {
    /// The checks worth sending: those whose state is not known, or would turn.
    pub fn worth_asking(&self, sku: &str, checks: Vec<AlertCheck>) -> Vec<AlertCheck> {
        checks
            .into_iter()
            .filter(|c| match self.0.get(&(sku.to_owned(), c.field.clone())) {
                Some(low) => c.next(Some(low)).1.is_some(),
                None => true,
            })
            .collect()
    }

    /// Notes the states the store answered with.
    pub fn learn(&self, sku: &str, checks: &[AlertCheck], states: &[(bool, Option<EventKind>)]) {
        for (c, (low, _)) in checks.iter().zip(states) {
            self.0.insert((sku.to_owned(), c.field.clone()), *low);
        }
    }
}

/// What the alert rules, the network and the segments say of one sku's levels: every state
/// to check. Nodes not in the network, and disabled ones, count for nothing.
pub fn assess(
    sku: &str,
    levels: &HashMap<String, StockLevel>,
    network: &Network,
    segments: &Segments,
    rules: &AlertRules,
) -> Vec<AlertCheck> {
    let mut checks = Vec::new();
    for node in network.nodes() {
        let level = levels.get(&node.id);
        let ats = if node.enabled {
            level.map_or(0, |l| l.ats(false))
        } else {
            0
        };
        match rules.threshold_at(sku, node, level) {
            Some(threshold) => {
                checks.push(AlertCheck::node(&node.id, ats, threshold, rules.hysteresis));
            }
            // a node with stock of the sku and no threshold now may have had one: a low state
            // it left ends (the state cache keeps this from reaching the store every time)
            None if level.is_some() => checks.push(AlertCheck::unwatched_node(&node.id, ats)),
            None => {}
        }
    }
    for name in segments.names() {
        let Some(segment) = segments.get(&name) else {
            continue;
        };
        let ats = network
            .nodes()
            .iter()
            .filter(|n| n.enabled && segment.exclusion(n).is_none())
            .filter_map(|n| levels.get(&n.id))
            .fold(0u64, |sum, l| sum.saturating_add(segment.ats(l)));
        if let Some(threshold) = rules.network_threshold(sku, &name) {
            checks.push(AlertCheck::network(&name, ats, threshold, rules.hysteresis));
        }
        checks.push(AlertCheck::out_of_stock(&name, ats));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_runs_and_single_characters() {
        let cases = [
            ("APP-*", "APP-0003", true),
            ("APP-*", "APP-", true),
            ("APP-*", "AP-1", false),
            ("*", "", true),
            ("A?C", "ABC", true),
            ("A?C", "AC", false),
            ("*-M", "TEE-RED-M", true),
            ("*-M", "TEE-RED-L", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("SKU-1", "SKU-1", true),
            ("SKU-1", "SKU-10", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(Glob::new(pattern).matches(text), want, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn the_most_specific_rule_wins_and_the_first_among_equals() {
        let rules = AlertRules {
            nodes: vec![
                NodeThreshold {
                    sku: Glob::new("*"),
                    scope: NodeScope::All,
                    units: 1,
                },
                NodeThreshold {
                    sku: Glob::new("APP-*"),
                    scope: NodeScope::Kind(NodeKind::Store),
                    units: 3,
                },
                NodeThreshold {
                    sku: Glob::new("APP-*"),
                    scope: NodeScope::Kind(NodeKind::Store),
                    units: 4,
                },
                NodeThreshold {
                    sku: Glob::new("APP-0003"),
                    scope: NodeScope::Node("st-valencia".into()),
                    units: 9,
                },
            ],
            network: vec![
                NetworkThreshold {
                    sku: Glob::new("*"),
                    segment: None,
                    units: 10,
                },
                NetworkThreshold {
                    sku: Glob::new("APP-*"),
                    segment: Some("vip".into()),
                    units: 50,
                },
            ],
            hysteresis: 2,
        };
        assert_eq!(
            rules.node_threshold("APP-0003", "st-valencia", NodeKind::Store),
            Some(9)
        );
        assert_eq!(
            rules.node_threshold("APP-0003", "st-madrid", NodeKind::Store),
            Some(3)
        );
        assert_eq!(
            rules.node_threshold("APP-0003", "wh-getafe", NodeKind::Warehouse),
            Some(1)
        );
        assert_eq!(
            rules.node_threshold("TOY-1", "st-madrid", NodeKind::Store),
            Some(1)
        );
        assert_eq!(rules.network_threshold("APP-1", "vip"), Some(50));
        assert_eq!(rules.network_threshold("APP-1", "standard"), Some(10));
        assert_eq!(rules.network_threshold("TOY-1", "vip"), Some(10));
        assert_eq!(
            AlertRules::default().node_threshold("A", "n", NodeKind::Store),
            None
        );
    }

    #[test]
    fn a_reorder_point_from_the_feed_takes_the_place_of_the_rules() {
        let node = |id: &str, kind| crate::sourcing::tests::node(id, kind, 40.0, -3.0, 0);
        let rules = AlertRules {
            nodes: vec![NodeThreshold {
                sku: Glob::new("APP-*"),
                scope: NodeScope::Kind(NodeKind::Store),
                units: 3,
            }],
            ..AlertRules::default()
        };
        let store = node("st-1", NodeKind::Store);
        let dc = node("dc-1", NodeKind::Warehouse);
        let level = |rp| StockLevel {
            on_hand: 10,
            reorder_point: rp,
            ..StockLevel::default()
        };
        assert_eq!(rules.threshold_at("APP-1", &store, None), Some(3));
        assert_eq!(
            rules.threshold_at("APP-1", &store, Some(&level(None))),
            Some(3)
        );
        // above or below the rule, the feed's point wins; 0 included
        assert_eq!(
            rules.threshold_at("APP-1", &store, Some(&level(Some(8)))),
            Some(8)
        );
        assert_eq!(
            rules.threshold_at("APP-1", &store, Some(&level(Some(0)))),
            Some(0)
        );
        // and it applies where no rule does
        assert_eq!(rules.threshold_at("TOY-1", &dc, Some(&level(None))), None);
        assert_eq!(
            rules.threshold_at("TOY-1", &dc, Some(&level(Some(12)))),
            Some(12)
        );
    }

    #[test]
    fn only_checks_that_may_turn_a_known_state_go_to_the_store() {
        let known = Known::default();
        let checks = || {
            vec![
                AlertCheck::node("a", 3, 5, 2),
                AlertCheck::node("b", 9, 5, 2),
            ]
        };
        // nothing known yet: every check is asked
        assert_eq!(known.worth_asking("S", checks()).len(), 2);
        known.learn(
            "S",
            &checks(),
            &[(true, Some(EventKind::LowStock)), (false, None)],
        );
        // a low at 3 and an ok at 9 cannot turn: nothing to ask
        assert!(known.worth_asking("S", checks()).is_empty());
        // b falling to 4 may turn low; a rising to 8 may recover
        let moved = vec![
            AlertCheck::node("a", 8, 5, 2),
            AlertCheck::node("b", 4, 5, 2),
        ];
        assert_eq!(known.worth_asking("S", moved).len(), 2);
        // states are per sku
        assert_eq!(known.worth_asking("T", checks()).len(), 2);
    }

    #[test]
    fn a_state_turns_low_at_the_threshold_and_back_past_the_hysteresis() {
        let check = |ats| AlertCheck::node("x", ats, 5, 2);
        assert_eq!(check(6).next(None), (false, None));
        assert_eq!(check(5).next(None), (true, Some(EventKind::LowStock)));
        assert_eq!(check(5).next(Some(true)), (true, None));
        // bouncing on the line reports nothing
        assert_eq!(check(6).next(Some(true)), (true, None));
        assert_eq!(check(7).next(Some(true)), (true, None));
        assert_eq!(
            check(8).next(Some(true)),
            (false, Some(EventKind::StockRecovered))
        );
        assert_eq!(check(8).next(Some(false)), (false, None));
        assert_eq!(
            check(0).next(Some(false)),
            (true, Some(EventKind::LowStock))
        );
    }
}
