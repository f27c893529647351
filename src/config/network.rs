//! The node network (`network.toml`): nodes with their kind, place, costs and capacity, and
//! defaults per kind that a node may override, parsed and validated.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::{ConfigError, one_line};
use crate::domain::{CostModel, GeoPoint, Network, Node, NodeKind};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    currency: String,
    #[serde(default)]
    kind_defaults: BTreeMap<NodeKind, NodeFields>,
    #[serde(default)]
    node: Vec<NodeEntry>,
}

/// Fields a kind default sets and a node may override.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFields {
    enabled: Option<bool>,
    can_ship: Option<bool>,
    can_pickup: Option<bool>,
    priority: Option<i32>,
    daily_capacity_units: Option<u64>,
    processing_days: Option<u32>,
    transit_km_per_day: Option<f64>,
    handling_per_unit: Option<f64>,
    per_parcel: Option<f64>,
    per_parcel_km: Option<f64>,
    per_unit_km: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeEntry {
    id: String,
    #[serde(default)]
    name: String,
    kind: NodeKind,
    #[serde(default)]
    city: String,
    country: String,
    lat: f64,
    lon: f64,
    #[serde(flatten)]
    fields: NodeFields,
}

pub(super) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses and validates a network file.
pub fn parse_network(source: &str, text: &str) -> Result<Network, ConfigError> {
    let file: NetworkFile =
        toml::from_str(text).map_err(|e| ConfigError::new(source, "", one_line(&e.to_string())))?;
    if file.currency.trim().is_empty() {
        return Err(ConfigError::new(source, "currency", "must not be empty"));
    }
    if file.node.is_empty() {
        return Err(ConfigError::new(source, "node", "the network has no nodes"));
    }
    let mut seen = HashSet::new();
    let mut nodes = Vec::with_capacity(file.node.len());
    for (i, entry) in file.node.into_iter().enumerate() {
        let at = |field: &str| format!("node[{i}].{field}");
        if !valid_id(&entry.id) {
            return Err(ConfigError::new(
                source,
                at("id"),
                format!(
                    "{:?} is not a node id (1 to 128 of letters, digits, '-', '_', '.')",
                    entry.id
                ),
            ));
        }
        if !seen.insert(entry.id.clone()) {
            return Err(ConfigError::new(
                source,
                at("id"),
                format!("duplicate node id {:?}", entry.id),
            ));
        }
        let at = |field: &str| format!("node[{i}] ({}).{field}", entry.id);
        let location = GeoPoint::new(entry.lat, entry.lon).map_err(|problem| {
            let field = if problem.starts_with("latitude") {
                "lat"
            } else {
                "lon"
            };
            ConfigError::new(source, at(field), problem)
        })?;
        if entry.country.len() != 2 || !entry.country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(ConfigError::new(
                source,
                at("country"),
                format!(
                    "{:?} is not an ISO 3166-1 alpha-2 code such as \"ES\"",
                    entry.country
                ),
            ));
        }
        let d = file
            .kind_defaults
            .get(&entry.kind)
            .cloned()
            .unwrap_or_default();
        let f = &entry.fields;
        let require = |own: Option<f64>, default: Option<f64>, field: &str| {
            let value = own.or(default).ok_or_else(|| {
                ConfigError::new(
                    source,
                    at(field),
                    format!("missing, and kind_defaults.{} does not set it", entry.kind),
                )
            })?;
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::new(
                    source,
                    at(field),
                    format!("{value} must be a finite number, 0 or more"),
                ));
            }
            Ok(value)
        };
        let transit_km_per_day = require(
            f.transit_km_per_day,
            d.transit_km_per_day,
            "transit_km_per_day",
        )?;
        if transit_km_per_day <= 0.0 {
            return Err(ConfigError::new(
                source,
                at("transit_km_per_day"),
                "must be above 0",
            ));
        }
        let cost = CostModel {
            handling_per_unit: require(
                f.handling_per_unit,
                d.handling_per_unit,
                "handling_per_unit",
            )?,
            per_parcel: require(f.per_parcel, d.per_parcel, "per_parcel")?,
            per_parcel_km: require(f.per_parcel_km, d.per_parcel_km, "per_parcel_km")?,
            per_unit_km: require(f.per_unit_km, d.per_unit_km, "per_unit_km")?,
        };
        let can_ship = f.can_ship.or(d.can_ship).unwrap_or(true);
        let can_pickup = f.can_pickup.or(d.can_pickup).unwrap_or(false);
        if can_pickup && entry.kind != NodeKind::Store {
            return Err(ConfigError::new(
                source,
                at("can_pickup"),
                format!(
                    "only stores serve pickups, and this node is a {}",
                    entry.kind
                ),
            ));
        }
        nodes.push(Node {
            name: if entry.name.is_empty() {
                entry.id.clone()
            } else {
                entry.name
            },
            id: entry.id,
            kind: entry.kind,
            location,
            city: entry.city,
            country: entry.country,
            enabled: f.enabled.or(d.enabled).unwrap_or(true),
            can_ship,
            can_pickup,
            priority: f.priority.or(d.priority).unwrap_or(100),
            daily_capacity_units: f
                .daily_capacity_units
                .or(d.daily_capacity_units)
                .unwrap_or(u64::MAX),
            processing_days: f.processing_days.or(d.processing_days).unwrap_or(1),
            transit_km_per_day,
            cost,
        });
    }
    Ok(Network::new(file.currency, nodes))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) const NODE: &str = r#"
currency = "EUR"
[kind_defaults.warehouse]
handling_per_unit = 0.3
per_parcel = 3.0
per_parcel_km = 0.004
per_unit_km = 0.001
transit_km_per_day = 500.0

[[node]]
id = "wh-a"
kind = "warehouse"
country = "ES"
lat = 40.0
lon = -3.0
"#;

    fn network_error(extra: &str) -> ConfigError {
        parse_network("net.toml", &format!("{NODE}{extra}")).unwrap_err()
    }

    #[test]
    fn minimal_network_parses() {
        let n = parse_network("net.toml", NODE).unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(n.get("wh-a").unwrap().cost.per_parcel, 3.0);
    }

    #[test]
    fn unknown_node_kind_is_named() {
        let e = network_error(
            "[[node]]\nid = \"x\"\nkind = \"shop\"\ncountry = \"ES\"\nlat = 1.0\nlon = 1.0\n",
        );
        assert_eq!(e.file, "net.toml");
        assert!(e.problem.contains("unknown variant `shop`"), "{e}");
        assert!(e.problem.contains("line"), "{e}");
    }

    #[test]
    fn duplicate_node_id_is_named() {
        let e = network_error(
            "[[node]]\nid = \"wh-a\"\nkind = \"warehouse\"\ncountry = \"ES\"\nlat = 1.0\nlon = 1.0\n",
        );
        assert_eq!(e.field, "node[1].id");
        assert!(e.problem.contains("duplicate node id \"wh-a\""));
    }

    #[test]
    fn coordinates_out_of_range_are_named() {
        let e = network_error(
            "[[node]]\nid = \"b\"\nkind = \"warehouse\"\ncountry = \"ES\"\nlat = 95.0\nlon = 1.0\n",
        );
        assert_eq!(e.field, "node[1] (b).lat");
        let e = network_error(
            "[[node]]\nid = \"b\"\nkind = \"warehouse\"\ncountry = \"ES\"\nlat = 5.0\nlon = 200.0\n",
        );
        assert_eq!(e.field, "node[1] (b).lon");
    }

    #[test]
    fn unknown_node_key_is_refused() {
        let e = network_error(
            "[[node]]\nid = \"b\"\nkind = \"warehouse\"\ncountry = \"ES\"\nlat = 5.0\nlon = 1.0\ncolour = 1\n",
        );
        assert!(e.problem.contains("colour"), "{e}");
    }

    #[test]
    fn missing_cost_without_a_kind_default_is_named() {
        let e = network_error(
            "[[node]]\nid = \"s\"\nkind = \"store\"\ncountry = \"ES\"\nlat = 5.0\nlon = 1.0\n",
        );
        assert_eq!(e.field, "node[1] (s).transit_km_per_day");
        assert!(e.problem.contains("kind_defaults.store"));
    }
}
