//! The low-stock alert thresholds (`alerts.toml`), parsed and validated against the network
//! and segments they name. A config directory without the file has no thresholds; out of
//! stock and back in stock are reported for every segment all the same.

use serde::Deserialize;

use super::{ConfigError, one_line};
use crate::domain::{Network, NodeKind, Segments};
use crate::events::alerts::{AlertRules, Glob, NetworkThreshold, NodeScope, NodeThreshold};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsFile {
    #[serde(default = "default_hysteresis")]
    hysteresis: u64,
    #[serde(default)]
    node: Vec<NodeEntry>,
    #[serde(default)]
    network: Vec<NetworkEntry>,
}

fn default_hysteresis() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeEntry {
    sku: String,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    node_kind: Option<NodeKind>,
    units: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkEntry {
    sku: String,
    #[serde(default)]
    segment: Option<String>,
    units: u64,
}

/// A sku pattern: 1 to 128 characters of ids (letters, digits, `-`, `_`, `.`) and the wildcards
/// `*` and `?`.
fn glob(source: &str, field: &str, pattern: &str) -> Result<Glob, ConfigError> {
    let ok = !pattern.is_empty()
        && pattern.len() <= 128
        && pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*' | '?'));
    if !ok {
        return Err(ConfigError::new(
            source,
            field,
            format!(
                "{pattern:?} is not a sku pattern (1 to 128 letters, digits, '-', '_', '.', with '*' for any run and '?' for one character)"
            ),
        ));
    }
    Ok(Glob::new(pattern))
}

/// Parses and validates an alerts file against the network and segments it names.
pub fn parse_alerts(
    source: &str,
    text: &str,
    network: &Network,
    segments: &Segments,
) -> Result<AlertRules, ConfigError> {
    let file: AlertsFile =
        toml::from_str(text).map_err(|e| ConfigError::new(source, "", one_line(&e.to_string())))?;
    let mut rules = AlertRules {
        hysteresis: file.hysteresis,
        ..AlertRules::default()
    };
    for (i, entry) in file.node.into_iter().enumerate() {
        let field = |name: &str| format!("node[{i}].{name}");
        let sku = glob(source, &field("sku"), &entry.sku)?;
        let scope = match (entry.node, entry.node_kind) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    source,
                    field("node"),
                    "name a node or a node_kind, not both",
                ));
            }
            (Some(node), None) => {
                if network.get(&node).is_none() {
                    return Err(ConfigError::new(
                        source,
                        field("node"),
                        format!("unknown node {node:?}"),
                    ));
                }
                NodeScope::Node(node)
            }
            (None, Some(kind)) => NodeScope::Kind(kind),
            (None, None) => NodeScope::All,
        };
        rules.nodes.push(NodeThreshold {
            sku,
            scope,
            units: entry.units,
        });
    }
    for (i, entry) in file.network.into_iter().enumerate() {
        let field = |name: &str| format!("network[{i}].{name}");
        let sku = glob(source, &field("sku"), &entry.sku)?;
        if let Some(segment) = &entry.segment
            && segments.get(segment).is_none()
        {
            return Err(ConfigError::new(
                source,
                field("segment"),
                format!(
                    "unknown segment {segment:?} (known: {})",
                    segments.names().join(", ")
                ),
            ));
        }
        rules.network.push(NetworkThreshold {
            sku,
            segment: entry.segment,
            units: entry.units,
        });
    }
    Ok(rules)
}

/// The thresholds in force, a line each, for `check-config`.
pub fn describe(rules: &AlertRules) -> Vec<String> {
    let mut lines = Vec::new();
    for t in &rules.nodes {
        let at = match &t.scope {
            NodeScope::All => "every node".to_owned(),
            NodeScope::Kind(k) => format!("every {k} node"),
            NodeScope::Node(n) => format!("node {n}"),
        };
        lines.push(format!(
            "  {} at {at}: low at ATS <= {}",
            t.sku.as_str(),
            t.units
        ));
    }
    for t in &rules.network {
        let seen = t
            .segment
            .as_deref()
            .map_or("every segment".to_owned(), |s| format!("segment {s}"));
        lines.push(format!(
            "  {} network-wide as {seen} sees it: low at ATS <= {}",
            t.sku.as_str(),
            t.units
        ));
    }
    lines.push(format!(
        "  a low state ends above its threshold + {} (hysteresis); out of stock is reported for every segment",
        rules.hysteresis
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{embedded, parse_network, parse_segments};

    fn parse(text: &str) -> Result<AlertRules, ConfigError> {
        let network = parse_network("network.toml", embedded::NETWORK).unwrap();
        let segments = parse_segments("segments.toml", embedded::SEGMENTS, &network).unwrap();
        parse_alerts("alerts.toml", text, &network, &segments)
    }

    #[test]
    fn the_demo_thresholds_parse() {
        let rules = parse(embedded::ALERTS).unwrap();
        assert!(!rules.nodes.is_empty() && !rules.network.is_empty());
    }

    #[test]
    fn bad_thresholds_are_refused_naming_file_field_and_problem() {
        let cases = [
            ("[[node]]\nsku = \"A\"\nunits = -1\n", "", "units"),
            (
                "[[node]]\nsku = \"A\"\nnode = \"nowhere\"\nunits = 1\n",
                "node[0].node",
                "unknown node",
            ),
            (
                "[[node]]\nsku = \"A\"\nnode = \"wh-getafe\"\nnode_kind = \"store\"\nunits = 1\n",
                "node[0].node",
                "not both",
            ),
            (
                "[[node]]\nsku = \"A\"\nnode_kind = \"castle\"\nunits = 1\n",
                "",
                "castle",
            ),
            (
                "[[node]]\nsku = \"\"\nunits = 1\n",
                "node[0].sku",
                "not a sku pattern",
            ),
            (
                "[[node]]\nsku = \"A B\"\nunits = 1\n",
                "node[0].sku",
                "not a sku pattern",
            ),
            (
                "[[network]]\nsku = \"*\"\nsegment = \"gold\"\nunits = 1\n",
                "network[0].segment",
                "unknown segment \"gold\"",
            ),
            ("[[network]]\nsku = \"*\"\n", "", "units"),
            ("hysteresis = -2\n", "", "hysteresis"),
            (
                "[[node]]\nsku = \"A\"\nunits = 1\ncolour = \"red\"\n",
                "",
                "colour",
            ),
        ];
        for (text, field, says) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.file, "alerts.toml", "{text}");
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }
}
