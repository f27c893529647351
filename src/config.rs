//! Loading and validating the config a planner edits: server settings, the node network, the
//! segment rules and the demo stock.
//!
//! Settings are layered: the defaults shipped in `config/` (compiled into the binary), then the
//! files of a config directory named on the command line, then `DOM_ROUTER__SECTION__KEY`
//! environment variables. Every file is parsed with unknown keys refused, then validated; an
//! error names the file, the field and the problem.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::{
    CostModel, GeoPoint, Network, Node, NodeKind, Rules, SegmentRules, Segments, StrategyKind,
    UnfilledPolicy,
};
use crate::sourcing::Backend;

/// The files of the embedded demo config, compiled in from `config/`.
pub mod embedded {
    pub const SERVER: &str = include_str!("../config/server.toml");
    pub const NETWORK: &str = include_str!("../config/network.toml");
    pub const SEGMENTS: &str = include_str!("../config/segments.toml");
    pub const STOCK: &str = include_str!("../config/stock.csv");
}

pub const SERVER_FILE: &str = "server.toml";
pub const NETWORK_FILE: &str = "network.toml";
pub const SEGMENTS_FILE: &str = "segments.toml";
pub const STOCK_FILE: &str = "stock.csv";
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

// ---------------------------------------------------------------------------------------------
// Server settings

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub holds: HoldSettings,
    pub sourcing: SourcingSettings,
    pub store: StoreSettings,
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
    fn validate(&self, source: &str) -> Result<(), ConfigError> {
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
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(source, field, "must be at least 1"));
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
    fn resolve_paths(&mut self, dir: &Path) {
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

/// Parses one layer of server settings into a TOML table.
fn parse_table(source: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::new(source, "", one_line(&e.to_string())))
}

/// Merges `over` into `base`, recording in `origin` which layer set each leaf.
fn merge(
    base: &mut toml::Table,
    over: toml::Table,
    layer: &str,
    prefix: &str,
    origin: &mut BTreeMap<String, String>,
) {
    for (key, value) in over {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                merge(b, o, layer, &path, origin)
            }
            (_, value) => {
                origin.insert(path, layer.to_owned());
                base.insert(key, value);
            }
        }
    }
}

/// `DOM_ROUTER__SERVER__LISTEN=...` as a table `{server: {listen: ...}}`. A value is read as a
/// TOML literal when it is one (numbers, booleans) and as a string otherwise.
fn env_layers(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, toml::Table)> {
    let mut layers = Vec::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        // a secret is text even when it looks like a number ("12345") or a boolean
        let secret = path.last().is_some_and(|k| k == "password");
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|_| !secret)
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut table = toml::Table::new();
        let mut cursor = &mut table;
        for (i, part) in path.iter().enumerate() {
            if i + 1 == path.len() {
                cursor.insert(part.clone(), value.clone());
            } else {
                cursor = cursor
                    .entry(part.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .expect("a fresh table");
            }
        }
        layers.push((name, table));
    }
    layers.sort_by(|a, b| a.0.cmp(&b.0));
    layers
}

/// Server settings from the embedded defaults, then `dir/server.toml` if there is one, then
/// the environment.
pub fn load_settings(
    source: &ConfigSource,
    env: impl Iterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let mut origin = BTreeMap::new();
    let mut merged = parse_table("embedded server.toml", embedded::SERVER)?;
    if let ConfigSource::Dir(dir) = source {
        let path = dir.join(SERVER_FILE);
        if path.exists() {
            let name = path.display().to_string();
            let text = read(&path)?;
            let layer = parse_table(&name, &text)?;
            merge(&mut merged, layer, &name, "", &mut origin);
        }
    }
    for (name, layer) in env_layers(env) {
        merge(
            &mut merged,
            layer,
            &format!("environment {name}"),
            "",
            &mut origin,
        );
    }
    let mut settings: Settings = deserialize_table(merged, &origin, "server settings")?;
    if let ConfigSource::Dir(dir) = source {
        settings.resolve_paths(dir);
    }
    settings.validate("server settings")?;
    Ok(settings)
}

/// Deserializes a merged table, naming the layer that set the offending field.
fn deserialize_table<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    origin: &BTreeMap<String, String>,
    fallback: &str,
) -> Result<T, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(toml::Value::Table(table), &mut track);
    T::deserialize(de).map_err(|e| {
        let field = track.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let layer = origin
            .iter()
            .filter(|(path, _)| field == **path || field.starts_with(&format!("{path}.")))
            .map(|(_, layer)| layer.clone())
            .next_back()
            .or_else(|| {
                // an unknown key: the path names its parent; find a layer that set a child
                origin
                    .iter()
                    .filter(|(path, _)| field.is_empty() || path.starts_with(&field))
                    .map(|(_, layer)| layer.clone())
                    .next_back()
            })
            .unwrap_or_else(|| fallback.to_owned());
        ConfigError::new(&layer, field, one_line(&e.to_string()))
    })
}

// ---------------------------------------------------------------------------------------------
// The network

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

fn valid_id(id: &str) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Segments

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
}

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

// ---------------------------------------------------------------------------------------------
// Demo stock

/// One row of `stock.csv`: a starting stock level for the in-memory store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StockSeed {
    pub sku: String,
    pub node: String,
    pub on_hand: u64,
    pub safety_stock: u64,
}

/// Parses `stock.csv` (lines starting with `#` are comments) against the network.
pub fn parse_stock(
    source: &str,
    text: &str,
    network: &Network,
) -> Result<Vec<StockSeed>, ConfigError> {
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for (i, row) in reader.deserialize::<StockSeed>().enumerate() {
        let at = |field: &str| format!("row {} {field}", i + 1).trim_end().to_owned();
        let row = row.map_err(|e| ConfigError::new(source, at(""), one_line(&e.to_string())))?;
        if row.sku.is_empty() {
            return Err(ConfigError::new(source, at("sku"), "must not be empty"));
        }
        if !network.contains(&row.node) {
            return Err(ConfigError::new(
                source,
                at("node"),
                format!("{:?} is not in the network", row.node),
            ));
        }
        if !seen.insert((row.sku.clone(), row.node.clone())) {
            return Err(ConfigError::new(
                source,
                at("sku"),
                format!("{} at {} appears twice", row.sku, row.node),
            ));
        }
        let limit = crate::store::MAX_STOCK_UNITS;
        for (field, value) in [("on_hand", row.on_hand), ("safety_stock", row.safety_stock)] {
            if value > limit {
                return Err(ConfigError::new(
                    source,
                    at(field),
                    format!("{value} is above the limit of {limit} units"),
                ));
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------
// Everything together

/// A whole validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: ConfigSource,
    pub settings: Settings,
    pub network: Network,
    pub segments: Segments,
    /// The version of the network and segment rules: see [`rules_version`].
    pub rules_version: String,
    /// Starting stock, where the source ships a `stock.csv`.
    pub stock: Vec<StockSeed>,
}

impl Config {
    /// Loads and validates everything from `source`, with environment overrides from `env`.
    pub fn load(
        source: ConfigSource,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let settings = load_settings(&source, env)?;
        let rules = load_rules(&source)?;
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
            rules_version: rules.version,
            stock,
        })
    }

    /// The network and segment rules, for an engine.
    pub fn rules(&self) -> Rules {
        Rules {
            network: self.network.clone(),
            segments: self.segments.clone(),
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
                format!(
                    "  {name}: priority {}, kinds [{}], max {} shipments, split penalty {}, unfilled {:?}",
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
            "config: {}\nlisten: {} (tls {}, auth {auth})\nhealth listen: {}\nmetrics: {}\nstore: {:?}\nrules version: {}\nnodes: {} ({}; {} disabled)\nsegments: {}\n{}\nstock: {} rows, {} skus, {} units on hand\n",
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
            self.stock.len(),
            skus.len(),
            units
        )
    }
}

/// The text of the rule files of a config source, and the names to report them by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesFiles {
    pub network_file: String,
    pub network: String,
    pub segments_file: String,
    pub segments: String,
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
                Ok(Self {
                    network_file: network.display().to_string(),
                    network: read(&network)?,
                    segments_file: segments.display().to_string(),
                    segments: read(&segments)?,
                })
            }
        }
    }

    /// The version rules parsed from these files will carry.
    pub fn version(&self) -> String {
        rules_version(&self.network, &self.segments)
    }

    /// Parses and validates the rules.
    pub fn parse(&self) -> Result<Rules, ConfigError> {
        let network = parse_network(&self.network_file, &self.network)?;
        let segments = parse_segments(&self.segments_file, &self.segments, &network)?;
        Ok(Rules {
            network,
            segments,
            version: self.version(),
        })
    }
}

/// The network and segment rules of a config source, validated: what a running server
/// reloads when planners change them.
pub fn load_rules(source: &ConfigSource) -> Result<Rules, ConfigError> {
    RulesFiles::read(source)?.parse()
}

/// The first 16 hex digits of the SHA-256 of `network.toml` followed by `segments.toml`: the
/// same files give the same version on every replica.
pub fn rules_version(network_toml: &str, segments_toml: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(network_toml.as_bytes())
        .chain_update(segments_toml.as_bytes())
        .finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
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

    #[test]
    fn environment_overrides_settings() {
        let env = vec![
            (
                "DOM_ROUTER__SERVER__LISTEN".to_owned(),
                "0.0.0.0:6000".to_owned(),
            ),
            (
                "DOM_ROUTER__HOLDS__DEFAULT_TTL_SECS".to_owned(),
                "60".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let s = load_settings(&ConfigSource::Embedded, env.into_iter()).unwrap();
        assert_eq!(s.server.listen, "0.0.0.0:6000".parse().unwrap());
        assert_eq!(s.holds.default_ttl_secs, 60);
    }

    #[test]
    fn bad_environment_value_names_the_variable_and_field() {
        let env = vec![(
            "DOM_ROUTER__SERVER__LISTEN".to_owned(),
            "not-an-address".to_owned(),
        )];
        let e = load_settings(&ConfigSource::Embedded, env.into_iter()).unwrap_err();
        assert_eq!(e.file, "environment DOM_ROUTER__SERVER__LISTEN");
        assert_eq!(e.field, "server.listen");
    }

    #[test]
    fn unknown_setting_is_refused() {
        let env = vec![("DOM_ROUTER__SERVER__LISTN".to_owned(), "x".to_owned())];
        let e = load_settings(&ConfigSource::Embedded, env.into_iter()).unwrap_err();
        assert!(e.problem.contains("unknown field `listn`"), "{e}");
        assert_eq!(e.file, "environment DOM_ROUTER__SERVER__LISTN");
    }

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
    fn relative_secret_paths_are_read_from_the_config_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(SERVER_FILE),
            "[auth]\nmode = \"tokens\"\ntokens_file = \"secrets/tokens.toml\"\n[tls]\ncert_file = \"/abs/tls.crt\"\nkey_file = \"tls.key\"\n",
        )
        .unwrap();
        let s = load_settings(&ConfigSource::Dir(dir.path().into()), std::iter::empty()).unwrap();
        assert_eq!(
            s.auth.tokens_file,
            Some(dir.path().join("secrets/tokens.toml"))
        );
        assert_eq!(s.tls.cert_file, Some(PathBuf::from("/abs/tls.crt")));
        assert_eq!(s.tls.key_file, Some(dir.path().join("tls.key")));
    }

    #[test]
    fn the_rules_version_is_a_content_hash_of_both_files() {
        let a = rules_version("n", "s");
        assert_eq!(a.len(), 16);
        assert_eq!(a, rules_version("n", "s"));
        assert_ne!(a, rules_version("n", "s2"));
        assert_ne!(a, rules_version("n2", "s"));
        let embedded = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
        assert_eq!(
            embedded.rules_version,
            rules_version(embedded::NETWORK, embedded::SEGMENTS)
        );
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

    const NODE: &str = r#"
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

    #[test]
    fn stock_rows_naming_unknown_nodes_or_beyond_the_limit_are_refused() {
        let network = parse_network("net.toml", NODE).unwrap();
        let e = parse_stock(
            "stock.csv",
            "sku,node,on_hand,safety_stock\nA,wh-a,3,0\nB,wh-z,1,0\n",
            &network,
        )
        .unwrap_err();
        assert_eq!(e.field, "row 2 node");
        let e = parse_stock(
            "stock.csv",
            "sku,node,on_hand,safety_stock\nA,wh-a,-3,0\n",
            &network,
        )
        .unwrap_err();
        assert_eq!(e.field, "row 1");
        for (row, field) in [
            ("A,wh-a,1000000000001,0", "row 1 on_hand"),
            ("A,wh-a,5,18446744073709551615", "row 1 safety_stock"),
        ] {
            let text = format!("sku,node,on_hand,safety_stock\n{row}\n");
            let e = parse_stock("stock.csv", &text, &network).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.problem.contains("above the limit"), "{e}");
        }
        parse_stock(
            "stock.csv",
            "sku,node,on_hand,safety_stock\nA,wh-a,1000000000000,1000000000000\n",
            &network,
        )
        .unwrap();
    }

    #[test]
    fn a_directory_layer_overrides_embedded_settings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NETWORK_FILE), embedded::NETWORK).unwrap();
        std::fs::write(dir.path().join(SEGMENTS_FILE), embedded::SEGMENTS).unwrap();
        std::fs::write(
            dir.path().join(SERVER_FILE),
            "[server]\nlisten = \"127.0.0.1:7000\"\n",
        )
        .unwrap();
        let config = Config::load(ConfigSource::Dir(dir.path().into()), no_env()).unwrap();
        assert_eq!(config.settings.server.listen.port(), 7000);
        assert_eq!(config.settings.holds.default_ttl_secs, 900);
        assert!(config.stock.is_empty());

        std::fs::write(dir.path().join(SERVER_FILE), "[server]\nlisten = 5\n").unwrap();
        let e = Config::load(ConfigSource::Dir(dir.path().into()), no_env()).unwrap_err();
        assert!(e.file.ends_with("server.toml"), "{e}");
        assert_eq!(e.field, "server.listen");
    }
}
