//! Loading and validating the config a planner edits: server settings, the node network, the
//! segment rules and the demo stock.
//!
//! Settings are layered: the defaults shipped in `config/` (compiled into the binary), then the
//! files of a config directory named on the command line, then `DOM_ROUTER__SECTION__KEY`
//! environment variables. Every file is parsed with unknown keys refused, then validated; an
//! error names the file, the field and the problem.
//!
//! This module holds what every part shares (the error, the source, the whole [`Config`] and
//! its loading); each concern has a file of its own: `settings` (server settings and their
//! checks), `layering` (defaults, then file, then environment), `network`, `segments`,
//! `stock` (the seed stock file), `rules` (the rule files a running server reloads) and
//! `solver` (whether the binary has the solver the settings ask for).

mod alerts;
mod layering;
mod network;
mod rules;
mod segments;
mod settings;
mod solver;
mod stock;
mod webhooks;

pub use alerts::{describe as describe_alerts, parse_alerts};
pub use layering::load_settings;
pub use network::parse_network;
pub use rules::{RulesFiles, load_rules, rules_version};
pub use segments::parse_segments;
pub use settings::{
    AuthMode, AuthSettings, EventSettings, HoldSettings, MetricsSettings, RedisSettings,
    ServerSettings, Settings, SourcingSettings, StoreKind, StoreSettings, TlsSettings,
    TracingSettings, redact_url,
};
pub use solver::check_solver;
pub use stock::{StockSeed, parse_stock};
pub use webhooks::{WebhookSettings, kind_name};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::domain::{Network, NodeKind, Rules, Segments};
use crate::sourcing::optimal::HIGHS_BUILT;

/// The files of the embedded demo config, compiled in from `config/`.
pub mod embedded {
    pub const SERVER: &str = include_str!("../../config/server.toml");
    pub const NETWORK: &str = include_str!("../../config/network.toml");
    pub const SEGMENTS: &str = include_str!("../../config/segments.toml");
    pub const STOCK: &str = include_str!("../../config/stock.csv");
    pub const ALERTS: &str = include_str!("../../config/alerts.toml");
}

pub const SERVER_FILE: &str = "server.toml";
pub const NETWORK_FILE: &str = "network.toml";
pub const SEGMENTS_FILE: &str = "segments.toml";
pub const STOCK_FILE: &str = "stock.csv";
pub const ALERTS_FILE: &str = "alerts.toml";
pub const ENV_PREFIX: &str = "DOM_ROUTER__";

/// A config problem: where it is, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or environment variable) the problem is in.
    pub file: String,
    /// The field, as a path (`node[3].kind`, `segment.vip.max_shipments`); empty for the file.
    pub field: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.problem)
        }
    }
}

impl ConfigError {
    pub fn new(source: &str, field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            file: source.to_owned(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The demo compiled into the binary.
    Embedded,
    /// A directory holding `network.toml`, `segments.toml` and optionally `server.toml` and
    /// `stock.csv`.
    Dir(PathBuf),
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Embedded => f.write_str("embedded demo config"),
            ConfigSource::Dir(dir) => write!(f, "{}", dir.display()),
        }
    }
}

/// A whole validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: ConfigSource,
    pub settings: Settings,
    pub network: Network,
    pub segments: Segments,
    /// Low-stock alert thresholds (`alerts.toml`; none without the file).
    pub alerts: crate::events::alerts::AlertRules,
    /// Look-ahead sourcing (`[lookahead]` of `segments.toml`).
    pub lookahead: crate::lookahead::Settings,
    /// The version of the network, segment and alert rules: see [`rules_version`].
    pub rules_version: String,
    /// Starting stock, where the source ships a `stock.csv`.
    pub stock: Vec<StockSeed>,
}

impl Config {
    /// Loads and validates everything from `source`, with environment overrides from `env`,
    /// and checks that this binary has the solver the settings ask for.
    pub fn load(
        source: ConfigSource,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let settings = load_settings(&source, env)?;
        let rules = load_rules(&source)?;
        check_solver(&settings, &rules.network, HIGHS_BUILT, "server settings")?;
        let stock = match &source {
            ConfigSource::Embedded => {
                parse_stock("embedded stock.csv", embedded::STOCK, &rules.network)?
            }
            ConfigSource::Dir(dir) => {
                let path = dir.join(STOCK_FILE);
                if path.exists() {
                    parse_stock(&path.display().to_string(), &read(&path)?, &rules.network)?
                } else {
                    Vec::new()
                }
            }
        };
        Ok(Config {
            source,
            settings,
            network: rules.network,
            segments: rules.segments,
            alerts: rules.alerts,
            lookahead: rules.lookahead,
            rules_version: rules.version,
            stock,
        })
    }

    /// The network and segment rules, for an engine.
    pub fn rules(&self) -> Rules {
        Rules {
            network: self.network.clone(),
            segments: self.segments.clone(),
            alerts: self.alerts.clone(),
            lookahead: self.lookahead.clone(),
            version: self.rules_version.clone(),
        }
    }

    /// A few lines for people: what was loaded.
    pub fn summary(&self) -> String {
        let mut by_kind = BTreeMap::new();
        for n in self.network.nodes() {
            *by_kind.entry(n.kind).or_insert(0usize) += 1;
        }
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let disabled = self.network.nodes().iter().filter(|n| !n.enabled).count();
        let skus: BTreeSet<&str> = self.stock.iter().map(|s| s.sku.as_str()).collect();
        let units: u64 = self.stock.iter().map(|s| s.on_hand).sum();
        let segments: Vec<String> = self
            .segments
            .names()
            .into_iter()
            .map(|name| {
                let s = self.segments.get(&name).expect("listed segment");
                let kinds: Vec<&str> = s.node_kinds.iter().map(NodeKind::as_str).collect();
                let waits = s
                    .backorder_max_days
                    .map(|d| format!(", waiting at most {d} days"))
                    .unwrap_or_default();
                format!(
                    "  {name}: priority {}, kinds [{}], max {} shipments, split penalty {}, unfilled {:?}{waits}",
                    s.priority,
                    kinds.join(", "),
                    s.max_shipments,
                    s.split_penalty,
                    s.unfilled
                )
            })
            .collect();
        let optional = |addr: Option<SocketAddr>| addr.map_or("off".to_owned(), |a| a.to_string());
        let auth = match self.settings.auth.mode {
            AuthMode::Open => "open".to_owned(),
            AuthMode::Tokens => format!(
                "tokens from {}",
                self.settings
                    .auth
                    .tokens_file
                    .as_deref()
                    .map_or(String::new(), |p| p.display().to_string())
            ),
        };
        format!(
            "config: {}\nlisten: {} (tls {}, auth {auth})\nhealth listen: {}\nmetrics: {}\nstore: {:?}\nrules version: {}\nnodes: {} ({}; {} disabled)\nsegments: {}\n{}\nlook-ahead: {}\nalert thresholds:\n{}\nstock: {} rows, {} skus, {} units on hand\n",
            self.source,
            self.settings.server.listen,
            if self.settings.tls.enabled() {
                "on"
            } else {
                "off"
            },
            optional(self.settings.server.health_listen),
            optional(self.settings.metrics.listen),
            self.settings.store.kind,
            self.rules_version,
            self.network.len(),
            kinds.join(", "),
            disabled,
            self.segments.len(),
            segments.join("\n"),
            self.lookahead,
            describe_alerts(&self.alerts).join("\n"),
            self.stock.len(),
            skus.len(),
            units
        )
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&path.display().to_string(), "", format!("cannot read: {e}")))
}

/// Parser errors span several lines with a caret drawing; keep them on one line for logs.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| matches!(c, '|' | '^' | ' ')))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NodeKind;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    fn no_env() -> std::iter::Empty<(String, String)> {
        std::iter::empty()
    }

    #[test]
    fn shipped_config_loads_and_meets_the_demo_minimums() {
        let config = Config::load(ConfigSource::Embedded, no_env()).unwrap();
        let count = |kind| {
            config
                .network
                .nodes()
                .iter()
                .filter(|n| n.kind == kind)
                .count()
        };
        assert!(count(NodeKind::Warehouse) >= 4);
        assert!(count(NodeKind::Store) >= 20);
        assert!(count(NodeKind::ThirdPartyLogistics) >= 2);
        assert!(count(NodeKind::Dropship) >= 2);
        assert!(config.segments.len() >= 3);
        let skus: BTreeSet<_> = config.stock.iter().map(|s| &s.sku).collect();
        assert!(skus.len() >= 24, "{} skus", skus.len());
        assert_eq!(
            config.settings.server.listen,
            "127.0.0.1:50051".parse().unwrap()
        );
    }

    #[test]
    fn config_directory_in_the_repository_matches_the_embedded_one() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
        let from_dir = Config::load(ConfigSource::Dir(dir), no_env()).unwrap();
        let embedded = Config::load(ConfigSource::Embedded, no_env()).unwrap();
        assert_eq!(from_dir.settings, embedded.settings);
        assert_eq!(from_dir.network.nodes(), embedded.network.nodes());
        assert_eq!(from_dir.stock, embedded.stock);
    }
}
