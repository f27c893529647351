//! Server settings: the sections of `server.toml` as types, and the checks serde cannot make
//! (values that must be positive, settings that go together, features the binary lacks).
//! Where each value comes from is `layering`'s business.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::domain::StrategyKind;
use crate::sourcing::Backend;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub holds: HoldSettings,
    pub sourcing: SourcingSettings,
    pub store: StoreSettings,
    pub events: EventSettings,
    /// Receivers of events over HTTP; none by default.
    #[serde(default)]
    pub webhook: Vec<super::webhooks::WebhookSettings>,
    pub metrics: MetricsSettings,
    pub tracing: TracingSettings,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
}

/// `""` as `None`, anything else parsed: optional addresses and paths read well in TOML that
/// way, and an environment variable can clear them.
fn empty_as_none<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: fmt::Display,
{
    let text = String::deserialize(de)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim()
        .parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub max_message_bytes: usize,
    pub max_lines_per_order: usize,
    pub max_updates_per_call: usize,
    pub max_skus_per_query: usize,
    pub request_timeout_ms: u64,
    pub drain_timeout_ms: u64,
    pub health_check_interval_ms: u64,
    /// A plaintext listener serving only the health service, for probes that cannot speak
    /// TLS or send a token.
    #[serde(deserialize_with = "empty_as_none")]
    pub health_listen: Option<SocketAddr>,
    /// How often the config directory is read for rule changes, besides file events and
    /// SIGHUP; 0 turns the polling off.
    pub reload_interval_ms: u64,
    /// Whether file events in the config directory trigger a reload (off where the file
    /// system does not report them; polling and SIGHUP still work).
    pub watch_config: bool,
}

/// The log of what changed (`dom.v1.Events`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Events the log keeps at most (Redis trims to about that many, never fewer).
    pub retain_events: usize,
    /// Events older than this are dropped by the sweep.
    pub retain_secs: u64,
    /// Events a watcher may fall behind the live feed before it is ended.
    pub watcher_buffer: usize,
    /// Values one Watch filter may name in all.
    pub max_filter_values: usize,
}

/// The most events a log may be told to keep, and the largest watcher buffer: far beyond any
/// need, and low enough that neither can exhaust memory by a typo.
pub const MAX_RETAINED_EVENTS: usize = 10_000_000;
pub const MAX_WATCHER_BUFFER: usize = 1_000_000;

impl EventSettings {
    pub fn retention(&self) -> crate::events::Retention {
        crate::events::Retention {
            max_events: self.retain_events,
            max_age_ms: self.retain_secs.saturating_mul(1000),
        }
    }
}

impl Default for EventSettings {
    /// As the embedded `server.toml`.
    fn default() -> Self {
        Self {
            retain_events: 100_000,
            retain_secs: 86_400,
            watcher_buffer: crate::events::DEFAULT_WATCHER_BUFFER,
            max_filter_values: 1000,
        }
    }
}

/// Prometheus metrics over HTTP.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Where `/metrics` is served; none turns the endpoint off.
    #[serde(deserialize_with = "empty_as_none")]
    pub listen: Option<SocketAddr>,
}

/// Span export to an OpenTelemetry collector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    /// OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`; none turns export off.
    #[serde(deserialize_with = "empty_as_none")]
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    /// Share of traces kept, 0 to 1 (a parent's decision is followed).
    pub sample_ratio: f64,
}

/// TLS for the gRPC port.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain; with `key_file`, turns TLS on.
    #[serde(deserialize_with = "empty_as_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(deserialize_with = "empty_as_none")]
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle; when set, every client must present a certificate it signed.
    #[serde(deserialize_with = "empty_as_none")]
    pub client_ca_file: Option<PathBuf>,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Any caller may call anything.
    Open,
    /// Every `dom.v1` call carries a bearer token whose role allows the method.
    Tokens,
}

/// Who may call what.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// TOML file of `[[client]]` entries (name, role, token), mounted from a Secret.
    #[serde(deserialize_with = "empty_as_none")]
    pub tokens_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldSettings {
    pub default_ttl_secs: u32,
    pub min_ttl_secs: u32,
    pub max_ttl_secs: u32,
    pub sweep_interval_ms: u64,
    /// How often units waiting for supply are tried against stock again (besides every change
    /// that brings supply), by the replica holding the fill lease; 0 turns filling off.
    pub fill_interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcingSettings {
    pub default_strategy: StrategyKind,
    pub reserve_attempts: u32,
    pub solver: Backend,
    pub solve_budget_ms: u64,
    pub solver_threads: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    Memory,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub kind: StoreKind,
    pub seed_stock: bool,
    pub redis: RedisSettings,
}

/// Where the shared stock lives when `store.kind = "redis"`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// One URL for a single Redis; for Redis Cluster, one or more of its nodes.
    pub urls: Vec<String>,
    pub cluster: bool,
    /// Replaces a password in the URLs; best set from a Secret through the environment.
    #[serde(default)]
    pub password: Option<String>,
    /// Put before every key, so that several deployments can share one Redis.
    pub key_prefix: String,
    pub connect_timeout_ms: u64,
    /// How long one call to the store may take before it fails as unavailable.
    pub op_timeout_ms: u64,
    /// An attempt at a reservation that has not finished by then is rolled back by any replica.
    pub pending_timeout_ms: u64,
    /// How long released, expired and fulfilled reservations stay readable.
    pub retention_secs: u64,
}

impl fmt::Debug for RedisSettings {
    /// Leaves the password out, and any password written into a URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("RedisSettings")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("op_timeout_ms", &self.op_timeout_ms)
            .field("pending_timeout_ms", &self.pending_timeout_ms)
            .field("retention_secs", &self.retention_secs)
            .finish()
    }
}

/// A Redis URL with any password replaced, fit for a log line.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

impl Settings {
    /// Checks the relations between settings that serde cannot.
    pub(super) fn validate(&self, source: &str) -> Result<(), ConfigError> {
        let positive = [
            (
                "server.max_message_bytes",
                self.server.max_message_bytes as u64,
            ),
            (
                "server.max_lines_per_order",
                self.server.max_lines_per_order as u64,
            ),
            (
                "server.max_updates_per_call",
                self.server.max_updates_per_call as u64,
            ),
            (
                "server.max_skus_per_query",
                self.server.max_skus_per_query as u64,
            ),
            ("server.request_timeout_ms", self.server.request_timeout_ms),
            (
                "server.health_check_interval_ms",
                self.server.health_check_interval_ms,
            ),
            ("holds.min_ttl_secs", u64::from(self.holds.min_ttl_secs)),
            ("holds.sweep_interval_ms", self.holds.sweep_interval_ms),
            (
                "store.redis.connect_timeout_ms",
                self.store.redis.connect_timeout_ms,
            ),
            ("store.redis.op_timeout_ms", self.store.redis.op_timeout_ms),
            (
                "store.redis.pending_timeout_ms",
                self.store.redis.pending_timeout_ms,
            ),
            (
                "store.redis.retention_secs",
                self.store.redis.retention_secs,
            ),
            (
                "sourcing.reserve_attempts",
                u64::from(self.sourcing.reserve_attempts),
            ),
            ("events.retain_events", self.events.retain_events as u64),
            ("events.retain_secs", self.events.retain_secs),
            ("events.watcher_buffer", self.events.watcher_buffer as u64),
            (
                "events.max_filter_values",
                self.events.max_filter_values as u64,
            ),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(source, field, "must be at least 1"));
            }
        }
        let bounded = [
            (
                "events.retain_events",
                self.events.retain_events,
                MAX_RETAINED_EVENTS,
            ),
            (
                "events.watcher_buffer",
                self.events.watcher_buffer,
                MAX_WATCHER_BUFFER,
            ),
        ];
        for (field, value, max) in bounded {
            if value > max {
                return Err(ConfigError::new(
                    source,
                    field,
                    format!("{value} is above the limit of {max}"),
                ));
            }
        }
        let r = &self.store.redis;
        if self.store.kind == StoreKind::Redis {
            if r.urls.is_empty() {
                return Err(ConfigError::new(
                    source,
                    "store.redis.urls",
                    "must name at least one Redis URL when store.kind is \"redis\"",
                ));
            }
            if !r.cluster && r.urls.len() > 1 {
                return Err(ConfigError::new(
                    source,
                    "store.redis.urls",
                    format!(
                        "{} URLs given for a single Redis; set store.redis.cluster = true for Redis Cluster",
                        r.urls.len()
                    ),
                ));
            }
        }
        for (i, url) in r.urls.iter().enumerate() {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::new(
                    source,
                    format!("store.redis.urls[{i}]"),
                    format!("{:?} is not a redis:// or rediss:// URL", redact_url(url)),
                ));
            }
        }
        if r.key_prefix.is_empty() || r.key_prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                source,
                "store.redis.key_prefix",
                "must be non-empty and free of { and }, which Redis Cluster reads as a hash tag",
            ));
        }
        self.validate_operations(source)?;
        super::webhooks::validate(&self.webhook, source)?;
        let h = &self.holds;
        if h.min_ttl_secs > h.max_ttl_secs {
            return Err(ConfigError::new(
                source,
                "holds.min_ttl_secs",
                format!(
                    "{} is above holds.max_ttl_secs ({})",
                    h.min_ttl_secs, h.max_ttl_secs
                ),
            ));
        }
        if !(h.min_ttl_secs..=h.max_ttl_secs).contains(&h.default_ttl_secs) {
            return Err(ConfigError::new(
                source,
                "holds.default_ttl_secs",
                format!(
                    "{} is outside holds.min_ttl_secs..holds.max_ttl_secs ({}..{})",
                    h.default_ttl_secs, h.min_ttl_secs, h.max_ttl_secs
                ),
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// Relative file paths (TLS, tokens) are read from the config directory, not from
    /// wherever the server happens to start.
    pub(super) fn resolve_paths(&mut self, dir: &Path) {
        for path in [
            &mut self.tls.cert_file,
            &mut self.tls.key_file,
            &mut self.tls.client_ca_file,
            &mut self.auth.tokens_file,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }

    /// Metrics, tracing, TLS and auth: files that go together, and features the binary lacks.
    fn validate_operations(&self, source: &str) -> Result<(), ConfigError> {
        let t = &self.tracing;
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return Err(ConfigError::new(
                source,
                "tracing.sample_ratio",
                format!("{} is outside 0..1", t.sample_ratio),
            ));
        }
        if let Some(endpoint) = &t.otlp_endpoint {
            if !endpoint.starts_with("http://") {
                return Err(ConfigError::new(
                    source,
                    "tracing.otlp_endpoint",
                    format!(
                        "{endpoint:?} is not an http:// URL (spans go in plaintext to a collector, usually an agent beside the server)"
                    ),
                ));
            }
            if !cfg!(feature = "otel") {
                return Err(ConfigError::new(
                    source,
                    "tracing.otlp_endpoint",
                    "this binary was built without the `otel` feature; build with --features otel or leave it empty",
                ));
            }
            if t.service_name.trim().is_empty() {
                return Err(ConfigError::new(
                    source,
                    "tracing.service_name",
                    "must not be empty when spans are exported",
                ));
            }
        }
        let tls = &self.tls;
        match (&tls.cert_file, &tls.key_file) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    source,
                    "tls.key_file",
                    "must be set when tls.cert_file is",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    source,
                    "tls.cert_file",
                    "must be set when tls.key_file is",
                ));
            }
            _ => {}
        }
        if tls.client_ca_file.is_some() && tls.cert_file.is_none() {
            return Err(ConfigError::new(
                source,
                "tls.client_ca_file",
                "client certificates need TLS: set tls.cert_file and tls.key_file too",
            ));
        }
        if self.server.reload_interval_ms != 0 && self.server.reload_interval_ms < 100 {
            return Err(ConfigError::new(
                source,
                "server.reload_interval_ms",
                format!(
                    "{} ms is too often to read the config directory; use 100 or more, or 0 for no polling",
                    self.server.reload_interval_ms
                ),
            ));
        }
        if self.auth.mode == AuthMode::Tokens && self.auth.tokens_file.is_none() {
            return Err(ConfigError::new(
                source,
                "auth.tokens_file",
                "must name the clients' token file when auth.mode is \"tokens\"",
            ));
        }
        let ports = [
            ("server.listen", Some(self.server.listen)),
            ("server.health_listen", self.server.health_listen),
            ("metrics.listen", self.metrics.listen),
        ];
        for (i, (a, addr_a)) in ports.iter().enumerate() {
            for (b, addr_b) in &ports[i + 1..] {
                if let (Some(x), Some(y)) = (addr_a, addr_b)
                    && x.port() != 0
                    && x.port() == y.port()
                    && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
                {
                    return Err(ConfigError::new(
                        source,
                        *b,
                        format!("{y} is already taken by {a}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, ConfigSource, load_settings};

    fn settings_with(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        load_settings(&ConfigSource::Embedded, env.into_iter())
    }

    #[test]
    fn a_password_from_the_environment_stays_text_even_when_it_looks_like_a_number() {
        let s = settings_with(&[("DOM_ROUTER__STORE__REDIS__PASSWORD", "12345")]).unwrap();
        assert_eq!(s.store.redis.password.as_deref(), Some("12345"));
        let s = settings_with(&[("DOM_ROUTER__STORE__REDIS__PASSWORD", "true")]).unwrap();
        assert_eq!(s.store.redis.password.as_deref(), Some("true"));
    }

    #[test]
    fn empty_addresses_and_paths_turn_their_feature_off() {
        let s = settings_with(&[("DOM_ROUTER__METRICS__LISTEN", "")]).unwrap();
        assert_eq!(s.metrics.listen, None);
        let s = settings_with(&[]).unwrap();
        assert_eq!(s.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!((s.server.health_listen, s.tls.cert_file), (None, None));
        assert_eq!(s.auth.mode, AuthMode::Open);
        let e = settings_with(&[("DOM_ROUTER__METRICS__LISTEN", "nowhere")]).unwrap_err();
        assert_eq!(e.field, "metrics.listen");
    }

    #[test]
    fn operations_settings_that_go_together_are_checked() {
        let e = settings_with(&[("DOM_ROUTER__TLS__CERT_FILE", "/x.pem")]).unwrap_err();
        assert_eq!(e.field, "tls.key_file");
        let e = settings_with(&[("DOM_ROUTER__TLS__CLIENT_CA_FILE", "/ca.pem")]).unwrap_err();
        assert_eq!(e.field, "tls.client_ca_file");
        let e = settings_with(&[("DOM_ROUTER__AUTH__MODE", "tokens")]).unwrap_err();
        assert_eq!(e.field, "auth.tokens_file");
        let e = settings_with(&[("DOM_ROUTER__AUTH__MODE", "sometimes")]).unwrap_err();
        assert_eq!(e.field, "auth.mode");
        let e = settings_with(&[("DOM_ROUTER__TRACING__SAMPLE_RATIO", "1.5")]).unwrap_err();
        assert_eq!(e.field, "tracing.sample_ratio");
        let e = settings_with(&[
            ("DOM_ROUTER__SERVER__LISTEN", "0.0.0.0:7000"),
            ("DOM_ROUTER__METRICS__LISTEN", "127.0.0.1:7000"),
        ])
        .unwrap_err();
        assert_eq!(e.field, "metrics.listen");
        let e =
            settings_with(&[("DOM_ROUTER__TRACING__OTLP_ENDPOINT", "collector:4317")]).unwrap_err();
        assert_eq!(e.field, "tracing.otlp_endpoint");
        let e = settings_with(&[("DOM_ROUTER__SERVER__RELOAD_INTERVAL_MS", "5")]).unwrap_err();
        assert_eq!(e.field, "server.reload_interval_ms");
        let otel = settings_with(&[("DOM_ROUTER__TRACING__OTLP_ENDPOINT", "http://c:4317")]);
        if cfg!(feature = "otel") {
            assert!(otel.is_ok());
        } else {
            assert_eq!(otel.unwrap_err().field, "tracing.otlp_endpoint");
        }
    }

    #[test]
    fn ttl_bounds_are_checked() {
        let env = vec![(
            "DOM_ROUTER__HOLDS__DEFAULT_TTL_SECS".to_owned(),
            "999999".to_owned(),
        )];
        let e = load_settings(&ConfigSource::Embedded, env.into_iter()).unwrap_err();
        assert_eq!(e.field, "holds.default_ttl_secs");
    }
}
