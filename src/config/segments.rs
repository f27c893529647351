//! The customer segment rules (`segments.toml`), parsed and validated against the network
//! whose nodes they name.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::network::valid_id;
use super::{ConfigError, one_line};
use crate::domain::{Network, NodeKind, SegmentRules, Segments, UnfilledPolicy};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentsFile {
    segment: BTreeMap<String, SegmentEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentEntry {
    #[serde(default = "default_segment_priority")]
    priority: i32,
    #[serde(default)]
    node_kinds: Option<Vec<NodeKind>>,
    #[serde(default)]
    allowed_nodes: Option<Vec<String>>,
    #[serde(default)]
    excluded_nodes: Vec<String>,
    #[serde(default)]
    use_safety_stock: bool,
    #[serde(default = "default_max_shipments")]
    max_shipments: u32,
    #[serde(default)]
    split_penalty: f64,
    #[serde(default)]
    max_distance_km: Option<f64>,
    #[serde(default = "default_unfilled")]
    unfilled: UnfilledPolicy,
    #[serde(default = "default_unfilled_penalty")]
    unfilled_penalty: f64,
    #[serde(default = "default_service_level_days")]
    service_level_days: u32,
    #[serde(default)]
    lateness_penalty: f64,
    #[serde(default)]
    allow_transfer: bool,
    #[serde(default = "default_transfer_per_unit")]
    transfer_per_unit: f64,
    #[serde(default)]
    protect_units: u64,
    #[serde(default)]
    protect_share: f64,
    #[serde(default)]
    backorder_max_days: Option<u32>,
}

/// The longest `backorder_max_days` may be: ten years.
const MAX_BACKORDER_DAYS: u32 = 3650;

fn default_segment_priority() -> i32 {
    100
}
fn default_max_shipments() -> u32 {
    3
}
fn default_unfilled() -> UnfilledPolicy {
    UnfilledPolicy::Reject
}
fn default_unfilled_penalty() -> f64 {
    50.0
}
fn default_service_level_days() -> u32 {
    5
}
fn default_transfer_per_unit() -> f64 {
    1.0
}

/// Parses and validates a segments file against the network it names nodes of.
pub fn parse_segments(
    source: &str,
    text: &str,
    network: &Network,
) -> Result<Segments, ConfigError> {
    let file: SegmentsFile =
        toml::from_str(text).map_err(|e| ConfigError::new(source, "", one_line(&e.to_string())))?;
    if file.segment.is_empty() {
        return Err(ConfigError::new(
            source,
            "segment",
            "no segments are defined",
        ));
    }
    let mut segments = Vec::new();
    for (name, e) in file.segment {
        let at = |field: &str| format!("segment.{name}.{field}");
        if !valid_id(&name) {
            return Err(ConfigError::new(
                source,
                format!("segment.{name}"),
                "a segment name is 1 to 128 of letters, digits, '-', '_', '.'",
            ));
        }
        for (field, list) in [
            ("allowed_nodes", e.allowed_nodes.as_deref().unwrap_or(&[])),
            ("excluded_nodes", e.excluded_nodes.as_slice()),
        ] {
            if let Some(unknown) = list.iter().find(|id| !network.contains(id)) {
                return Err(ConfigError::new(
                    source,
                    at(field),
                    format!("names node {unknown:?}, which is not in the network"),
                ));
            }
        }
        let node_kinds: BTreeSet<NodeKind> = match e.node_kinds {
            Some(kinds) if kinds.is_empty() => {
                return Err(ConfigError::new(
                    source,
                    at("node_kinds"),
                    "is empty: the segment could use no node",
                ));
            }
            Some(kinds) => kinds.into_iter().collect(),
            None => NodeKind::ALL.into_iter().collect(),
        };
        if e.max_shipments == 0 {
            return Err(ConfigError::new(
                source,
                at("max_shipments"),
                "must be at least 1",
            ));
        }
        for (field, value) in [
            ("split_penalty", e.split_penalty),
            ("unfilled_penalty", e.unfilled_penalty),
            ("lateness_penalty", e.lateness_penalty),
            ("transfer_per_unit", e.transfer_per_unit),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::new(
                    source,
                    at(field),
                    format!("{value} must be a finite number, 0 or more"),
                ));
            }
        }
        if let Some(d) = e.max_distance_km
            && (!d.is_finite() || d <= 0.0)
        {
            return Err(ConfigError::new(
                source,
                at("max_distance_km"),
                format!("{d} must be above 0 (leave it out for no limit)"),
            ));
        }
        if e.protect_units > crate::store::MAX_STOCK_UNITS {
            return Err(ConfigError::new(
                source,
                at("protect_units"),
                format!(
                    "{} is above the limit of {}",
                    e.protect_units,
                    crate::store::MAX_STOCK_UNITS
                ),
            ));
        }
        if let Some(days) = e.backorder_max_days {
            if e.unfilled != UnfilledPolicy::Backorder {
                return Err(ConfigError::new(
                    source,
                    at("backorder_max_days"),
                    format!(
                        "is set, but units of this segment never wait: unfilled is {:?}, not \"backorder\"",
                        e.unfilled
                    ),
                ));
            }
            if !(1..=MAX_BACKORDER_DAYS).contains(&days) {
                return Err(ConfigError::new(
                    source,
                    at("backorder_max_days"),
                    format!("{days} must be from 1 to {MAX_BACKORDER_DAYS}"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&e.protect_share) {
            return Err(ConfigError::new(
                source,
                at("protect_share"),
                format!("{} must be from 0 to 1", e.protect_share),
            ));
        }
        let rules = SegmentRules {
            name: name.clone(),
            priority: e.priority,
            node_kinds,
            allowed_nodes: e.allowed_nodes.map(|v| v.into_iter().collect()),
            excluded_nodes: e.excluded_nodes.into_iter().collect(),
            use_safety_stock: e.use_safety_stock,
            max_shipments: e.max_shipments,
            split_penalty: e.split_penalty,
            max_distance_km: e.max_distance_km,
            unfilled: e.unfilled,
            unfilled_penalty: e.unfilled_penalty,
            service_level_days: e.service_level_days,
            lateness_penalty: e.lateness_penalty,
            allow_transfer: e.allow_transfer,
            transfer_per_unit: e.transfer_per_unit,
            protect: crate::store::Protection {
                units: e.protect_units,
                // -0.0 is 0
                share: if e.protect_share == 0.0 {
                    0.0
                } else {
                    e.protect_share
                },
            },
            closed_by: Vec::new(),
            backorder_max_days: e.backorder_max_days,
        };
        if !network
            .nodes()
            .iter()
            .any(|n| n.enabled && rules.exclusion(n).is_none())
        {
            return Err(ConfigError::new(
                source,
                format!("segment.{name}"),
                "its rules leave no enabled node it may use",
            ));
        }
        segments.push(rules);
    }
    Ok(Segments::new(segments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::network::{parse_network, tests::NODE};

    #[test]
    fn segment_naming_an_unknown_node_is_refused() {
        let network = parse_network("net.toml", NODE).unwrap();
        let e = parse_segments(
            "seg.toml",
            "[segment.vip]\nexcluded_nodes = [\"nowhere\"]\n",
            &network,
        )
        .unwrap_err();
        assert_eq!(e.field, "segment.vip.excluded_nodes");
        assert!(e.problem.contains("\"nowhere\""));
    }

    #[test]
    fn segment_with_no_usable_node_is_refused() {
        let network = parse_network("net.toml", NODE).unwrap();
        let e = parse_segments(
            "seg.toml",
            "[segment.x]\nnode_kinds = [\"store\"]\n",
            &network,
        )
        .unwrap_err();
        assert_eq!(e.field, "segment.x");
    }

    #[test]
    fn protection_nests_by_priority_and_is_checked() {
        use crate::store::{Protection, StockLevel};
        let network = parse_network("net.toml", NODE).unwrap();
        let text = "[segment.vip]\npriority = 10\nprotect_units = 3\n\
                    [segment.gold]\npriority = 10\n\
                    [segment.standard]\npriority = 50\nprotect_share = 0.25\n\
                    [segment.marketplace]\npriority = 80\nprotect_units = 9\n";
        let segments = parse_segments("seg.toml", text, &network).unwrap();
        let closed = |name: &str| -> Vec<String> {
            segments
                .get(name)
                .unwrap()
                .closed_by
                .iter()
                .map(|(n, _)| n.clone())
                .collect()
        };
        // better priorities only: not an equal one, and not the segment's own
        assert!(closed("vip").is_empty());
        assert!(closed("gold").is_empty());
        assert_eq!(closed("standard"), ["vip"]);
        assert_eq!(closed("marketplace"), ["vip", "standard"]);
        let level = StockLevel {
            on_hand: 10,
            reserved: 1,
            ..StockLevel::default()
        };
        // 9 free; vip keeps 3, standard ceil(2.5) = 3
        assert_eq!(segments.get("vip").unwrap().ats(&level), 9);
        assert_eq!(segments.get("standard").unwrap().ats(&level), 6);
        assert_eq!(segments.get("marketplace").unwrap().ats(&level), 3);
        assert_eq!(
            segments.get("marketplace").unwrap().kept(&level),
            (6, vec!["vip", "standard"])
        );
        // the larger of units and share; a share rounds up
        let p = Protection {
            units: 2,
            share: 0.1,
        };
        assert_eq!(
            (p.kept(0), p.kept(20), p.kept(21), p.kept(100)),
            (2, 2, 3, 10)
        );
        for (field, value, problem) in [
            ("protect_share", "1.5", "1.5 must be from 0 to 1"),
            ("protect_share", "-0.1", "-0.1 must be from 0 to 1"),
            (
                "protect_units",
                "1000000000001",
                "1000000000001 is above the limit of 1000000000000",
            ),
        ] {
            let e = parse_segments(
                "seg.toml",
                &format!("[segment.x]\n{field} = {value}\n"),
                &network,
            )
            .unwrap_err();
            assert_eq!(e.field, format!("segment.x.{field}"));
            assert_eq!(e.problem, problem);
        }
        let e =
            parse_segments("seg.toml", "[segment.x]\nprotect_units = -1\n", &network).unwrap_err();
        assert!(
            e.problem.contains("protect_units") || e.field.contains("protect_units"),
            "{e}"
        );
    }

    #[test]
    fn backorder_max_days_is_read_and_checked() {
        let network = parse_network("net.toml", NODE).unwrap();
        let segments = parse_segments(
            "seg.toml",
            "[segment.x]\nunfilled = \"backorder\"\nbackorder_max_days = 14\n[segment.y]\n",
            &network,
        )
        .unwrap();
        assert_eq!(segments.get("x").unwrap().backorder_max_days, Some(14));
        assert_eq!(segments.get("y").unwrap().backorder_max_days, None);
        for (body, problem) in [
            (
                "unfilled = \"partial\"\nbackorder_max_days = 3",
                "is set, but units of this segment never wait: unfilled is Partial, not \"backorder\"",
            ),
            (
                "backorder_max_days = 3",
                "is set, but units of this segment never wait: unfilled is Reject, not \"backorder\"",
            ),
            (
                "unfilled = \"backorder\"\nbackorder_max_days = 0",
                "0 must be from 1 to 3650",
            ),
            (
                "unfilled = \"backorder\"\nbackorder_max_days = 3651",
                "3651 must be from 1 to 3650",
            ),
        ] {
            let e = parse_segments("seg.toml", &format!("[segment.x]\n{body}\n"), &network)
                .unwrap_err();
            assert_eq!(e.field, "segment.x.backorder_max_days");
            assert_eq!(e.problem, problem);
        }
    }

    #[test]
    fn segment_unknown_key_and_bad_values_are_refused() {
        let network = parse_network("net.toml", NODE).unwrap();
        let e =
            parse_segments("seg.toml", "[segment.x]\nmax_shipment = 2\n", &network).unwrap_err();
        assert!(e.problem.contains("max_shipment"), "{e}");
        let e =
            parse_segments("seg.toml", "[segment.x]\nmax_shipments = 0\n", &network).unwrap_err();
        assert_eq!(e.field, "segment.x.max_shipments");
        let e = parse_segments("seg.toml", "[segment.x]\nunfilled = \"maybe\"\n", &network)
            .unwrap_err();
        assert!(e.problem.contains("maybe"), "{e}");
    }
}
