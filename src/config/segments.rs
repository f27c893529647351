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
    /// Read by [`parse_lookahead`].
    #[serde(default)]
    #[allow(dead_code)]
    lookahead: Option<toml::Value>,
}

/// The `[lookahead]` section as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookaheadEntry {
    enabled: Option<bool>,
    weight: Option<f64>,
    horizon_secs: Option<u64>,
    window_secs: Option<u64>,
    refresh_secs: Option<u64>,
    refresh_on_change_units: Option<u64>,
    region_km: Option<f64>,
    lost_sale_cost: Option<f64>,
    calibration_rounds: Option<u64>,
    replenished_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LookaheadFile {
    #[serde(default)]
    lookahead: Option<LookaheadEntry>,
}

/// The `[lookahead]` section of a segments file (defaults where it has none), validated: a
/// weight of 0 to 1,000, a horizon and a window of 1 minute to 7 days, a refresh of 1 s to
/// 1 day, a stock change within the stock limit, cells of 1 to 5,000 km, a lost sale of 0 to
/// 1,000,000, 0 to 1,000 rounds of calibration, a replenishment time as HH:MM.
pub fn parse_lookahead(
    source: &str,
    text: &str,
) -> Result<crate::lookahead::Settings, ConfigError> {
    let file: LookaheadFile =
        toml::from_str(text).map_err(|e| ConfigError::new(source, "", one_line(&e.to_string())))?;
    let e = file.lookahead.unwrap_or_default();
    let d = crate::lookahead::Settings::default();
    let out = crate::lookahead::Settings {
        enabled: e.enabled.unwrap_or(d.enabled),
        weight: e.weight.unwrap_or(d.weight),
        horizon_secs: e.horizon_secs.unwrap_or(d.horizon_secs),
        window_secs: e.window_secs.unwrap_or(d.window_secs),
        refresh_secs: e.refresh_secs.unwrap_or(d.refresh_secs),
        refresh_on_change_units: e
            .refresh_on_change_units
            .unwrap_or(d.refresh_on_change_units),
        region_km: e.region_km.unwrap_or(d.region_km),
        lost_sale_cost: e.lost_sale_cost.unwrap_or(d.lost_sale_cost),
        calibration_rounds: e.calibration_rounds.unwrap_or(d.calibration_rounds),
        replenished_at: match &e.replenished_at {
            None => d.replenished_at,
            Some(at) => Some(chrono::NaiveTime::parse_from_str(at, "%H:%M").map_err(|_| {
                ConfigError::new(
                    source,
                    "lookahead.replenished_at",
                    format!("must be a time of day as HH:MM (UTC), got {at:?}"),
                )
            })?),
        },
    };
    let within = |field: &str, v: f64, lo: f64, hi: f64, unit: &str| {
        if v.is_finite() && (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(ConfigError::new(
                source,
                format!("lookahead.{field}"),
                format!("must be {lo} to {hi}{unit}, got {v}"),
            ))
        }
    };
    within("weight", out.weight, 0.0, 1_000.0, "")?;
    within(
        "horizon_secs",
        out.horizon_secs as f64,
        60.0,
        604_800.0,
        " s",
    )?;
    within("window_secs", out.window_secs as f64, 60.0, 604_800.0, " s")?;
    within("refresh_secs", out.refresh_secs as f64, 1.0, 86_400.0, " s")?;
    within(
        "refresh_on_change_units",
        out.refresh_on_change_units as f64,
        0.0,
        crate::store::MAX_STOCK_UNITS as f64,
        " units",
    )?;
    within("region_km", out.region_km, 1.0, 5_000.0, " km")?;
    within("lost_sale_cost", out.lost_sale_cost, 0.0, 1_000_000.0, "")?;
    within(
        "calibration_rounds",
        out.calibration_rounds as f64,
        0.0,
        1_000.0,
        "",
    )?;
    Ok(out)
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
    fn the_lookahead_section_takes_defaults_and_names_a_bad_field() {
        let network = parse_network("net.toml", NODE).unwrap();
        let plain = "[segment.vip]\n";
        assert_eq!(
            parse_lookahead("seg.toml", plain).unwrap(),
            crate::lookahead::Settings::default()
        );
        let on = format!("{plain}[lookahead]\nenabled = true\nweight = 0.5\nregion_km = 40\n");
        // the segments parse with the section there
        parse_segments("seg.toml", &on, &network).unwrap();
        let s = parse_lookahead("seg.toml", &on).unwrap();
        assert!(s.enabled && s.active());
        assert_eq!((s.weight, s.region_km), (0.5, 40.0));
        assert_eq!(s.horizon_secs, 3600);
        assert_eq!((s.calibration_rounds, s.replenished_at), (0, None));
        let tuned = parse_lookahead(
            "seg.toml",
            &format!("{plain}[lookahead]\ncalibration_rounds = 20\nreplenished_at = \"22:30\"\n"),
        )
        .unwrap();
        assert_eq!(tuned.calibration_rounds, 20);
        assert_eq!(
            tuned.replenished_at,
            chrono::NaiveTime::from_hms_opt(22, 30, 0)
        );
        let said = crate::lookahead::Settings {
            enabled: true,
            ..tuned
        }
        .to_string();
        assert!(
            said.contains("until stock is replenished at 22:30 UTC")
                && said.contains("calibrated in 20 rounds"),
            "{said}"
        );
        for (text, field) in [
            ("weight = -1.0", "lookahead.weight"),
            ("weight = nan", "lookahead.weight"),
            ("horizon_secs = 10", "lookahead.horizon_secs"),
            ("window_secs = 999999999", "lookahead.window_secs"),
            ("refresh_secs = 0", "lookahead.refresh_secs"),
            (
                "refresh_on_change_units = 1000000000001",
                "lookahead.refresh_on_change_units",
            ),
            ("region_km = 0.5", "lookahead.region_km"),
            ("lost_sale_cost = 1e9", "lookahead.lost_sale_cost"),
            ("calibration_rounds = 1001", "lookahead.calibration_rounds"),
            ("replenished_at = \"25:00\"", "lookahead.replenished_at"),
            ("replenished_at = \"noon\"", "lookahead.replenished_at"),
        ] {
            let e =
                parse_lookahead("seg.toml", &format!("{plain}[lookahead]\n{text}\n")).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
        }
        // an unknown key is refused, naming it
        let e =
            parse_lookahead("seg.toml", &format!("{plain}[lookahead]\nhorizon = 5\n")).unwrap_err();
        assert!(e.to_string().contains("horizon"), "{e}");
        // weight 0: demand is learned, decisions are as without look-ahead
        let off = parse_lookahead(
            "seg.toml",
            &format!("{plain}[lookahead]\nenabled = true\nweight = 0\n"),
        )
        .unwrap();
        assert!(off.enabled && !off.active());
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
