//! The rule files (`network.toml`, `segments.toml` and, where there is one, `alerts.toml`) of
//! a config source, read together and versioned by their content: what a running server
//! reloads when planners change them.

use super::alerts::parse_alerts;
use super::network::parse_network;
use super::segments::{parse_lookahead, parse_segments};
use super::{ALERTS_FILE, ConfigError, ConfigSource, NETWORK_FILE, SEGMENTS_FILE, embedded, read};
use crate::domain::Rules;

/// The text of the rule files of a config source, and the names to report them by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesFiles {
    pub network_file: String,
    pub network: String,
    pub segments_file: String,
    pub segments: String,
    pub alerts_file: String,
    /// Empty where the source has no alerts file: no thresholds.
    pub alerts: String,
}

impl RulesFiles {
    /// Reads `network.toml` and `segments.toml` of `source`.
    pub fn read(source: &ConfigSource) -> Result<Self, ConfigError> {
        match source {
            ConfigSource::Embedded => Ok(Self {
                network_file: "embedded network.toml".to_owned(),
                network: embedded::NETWORK.to_owned(),
                segments_file: "embedded segments.toml".to_owned(),
                segments: embedded::SEGMENTS.to_owned(),
                alerts_file: "embedded alerts.toml".to_owned(),
                alerts: embedded::ALERTS.to_owned(),
            }),
            ConfigSource::Dir(dir) => {
                if !dir.is_dir() {
                    return Err(ConfigError::new(
                        &dir.display().to_string(),
                        "",
                        "is not a directory",
                    ));
                }
                let network = dir.join(NETWORK_FILE);
                let segments = dir.join(SEGMENTS_FILE);
                let alerts = dir.join(ALERTS_FILE);
                Ok(Self {
                    network_file: network.display().to_string(),
                    network: read(&network)?,
                    segments_file: segments.display().to_string(),
                    segments: read(&segments)?,
                    alerts_file: alerts.display().to_string(),
                    alerts: if alerts.exists() {
                        read(&alerts)?
                    } else {
                        String::new()
                    },
                })
            }
        }
    }

    /// The version rules parsed from these files will carry.
    pub fn version(&self) -> String {
        rules_version(&self.network, &self.segments, &self.alerts)
    }

    /// Parses and validates the rules.
    pub fn parse(&self) -> Result<Rules, ConfigError> {
        let network = parse_network(&self.network_file, &self.network)?;
        let segments = parse_segments(&self.segments_file, &self.segments, &network)?;
        let alerts = parse_alerts(&self.alerts_file, &self.alerts, &network, &segments)?;
        let lookahead = parse_lookahead(&self.segments_file, &self.segments)?;
        Ok(Rules {
            network,
            segments,
            alerts,
            lookahead,
            version: self.version(),
        })
    }
}

/// The network, segment and alert rules of a config source, validated: what a running server
/// reloads when planners change them.
pub fn load_rules(source: &ConfigSource) -> Result<Rules, ConfigError> {
    RulesFiles::read(source)?.parse()
}

/// The first 16 hex digits of the SHA-256 of `network.toml`, `segments.toml` and
/// `alerts.toml` (empty where there is none) one after the other: the same files give the same
/// version on every replica.
pub fn rules_version(network_toml: &str, segments_toml: &str, alerts_toml: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(network_toml.as_bytes())
        .chain_update(segments_toml.as_bytes())
        .chain_update(alerts_toml.as_bytes())
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, embedded};

    #[test]
    fn the_rules_version_is_a_content_hash_of_the_rule_files() {
        let a = rules_version("n", "s", "a");
        assert_eq!(a.len(), 16);
        assert_eq!(a, rules_version("n", "s", "a"));
        assert_ne!(a, rules_version("n", "s2", "a"));
        assert_ne!(a, rules_version("n2", "s", "a"));
        assert_ne!(a, rules_version("n", "s", "a2"));
        let embedded = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
        assert_eq!(
            embedded.rules_version,
            rules_version(embedded::NETWORK, embedded::SEGMENTS, embedded::ALERTS)
        );
    }
}
