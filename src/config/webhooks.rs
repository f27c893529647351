//! Webhooks (`[[webhook]]` in `server.toml`): where matching events are POSTed, checked at
//! load with errors that name the entry and the field.

use std::fmt;

use serde::Deserialize;

use super::ConfigError;
use super::network::valid_id;
use crate::events::{EventKind, Filter};

/// The shortest secret accepted: a signature is only as strong as its key.
pub const MIN_SECRET_CHARS: usize = 16;
/// Values one webhook's filter may name in all.
pub const MAX_FILTER_VALUES: usize = 10_000;

/// One receiver of events over HTTP.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Names its delivery cursor and lease in the store, and its metrics.
    pub name: String,
    /// An `http://` or `https://` URL.
    pub url: String,
    /// Event kinds (`reservation_created`, ..., `back_in_stock`); none: every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub skus: Vec<String>,
    #[serde(default)]
    pub node_ids: Vec<String>,
    #[serde(default)]
    pub segments: Vec<String>,
    #[serde(default)]
    pub order_ids: Vec<String>,
    /// The HMAC-SHA256 key, inline; or `secret_env`, the variable that holds it.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_env: Option<String>,
    /// One POST may take this long before it counts as failed and is tried again.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    5000
}

impl fmt::Debug for WebhookSettings {
    /// Leaves the secret out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("kinds", &self.kinds)
            .field("skus", &self.skus)
            .field("node_ids", &self.node_ids)
            .field("segments", &self.segments)
            .field("order_ids", &self.order_ids)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_env", &self.secret_env)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The name of a kind in config files.
pub fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::ReservationCreated => "reservation_created",
        EventKind::ReservationCommitted => "reservation_committed",
        EventKind::ReservationReleased => "reservation_released",
        EventKind::ReservationExpired => "reservation_expired",
        EventKind::ReservationFulfilled => "reservation_fulfilled",
        EventKind::ReservationRerouted => "reservation_rerouted",
        EventKind::UnitsCancelled => "units_cancelled",
        EventKind::BackorderFilled => "backorder_filled",
        EventKind::StockChanged => "stock_changed",
        EventKind::LowStock => "low_stock",
        EventKind::StockRecovered => "stock_recovered",
        EventKind::OutOfStock => "out_of_stock",
        EventKind::BackInStock => "back_in_stock",
    }
}

impl WebhookSettings {
    /// The events it takes.
    pub fn filter(&self) -> Filter {
        Filter {
            kinds: self
                .kinds
                .iter()
                .filter_map(|k| EventKind::ALL.into_iter().find(|e| kind_name(*e) == k))
                .collect(),
            skus: self.skus.iter().cloned().collect(),
            nodes: self.node_ids.iter().cloned().collect(),
            segments: self.segments.iter().cloned().collect(),
            order_ids: self.order_ids.iter().cloned().collect(),
        }
    }

    /// The secret: inline, or read from its variable in `env`.
    pub fn secret(&self, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        match (&self.secret, &self.secret_env) {
            (Some(s), _) => Ok(s.clone()),
            (None, Some(var)) => env(var)
                .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
                .ok_or_else(|| {
                    format!(
                        "the variable {var} is not set, or holds fewer than {MIN_SECRET_CHARS} characters"
                    )
                }),
            (None, None) => Err("no secret".to_owned()),
        }
    }
}

/// Checks every webhook: names unique ids, URLs http(s), kinds known, filters bounded, one
/// secret each.
pub(super) fn validate(hooks: &[WebhookSettings], source: &str) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, h) in hooks.iter().enumerate() {
        let field = |name: &str| format!("webhook[{i}].{name}");
        if !valid_id(&h.name) {
            return Err(ConfigError::new(
                source,
                field("name"),
                format!(
                    "{:?} is not a name (1 to 128 letters, digits, '-', '_', '.')",
                    crate::store::shown(&h.name)
                ),
            ));
        }
        if !names.insert(h.name.as_str()) {
            return Err(ConfigError::new(
                source,
                field("name"),
                format!("{:?} names another webhook too", h.name),
            ));
        }
        let uri: Option<http::Uri> = h.url.parse().ok();
        let scheme = uri.as_ref().and_then(|u| u.scheme_str()).unwrap_or("");
        if !matches!(scheme, "http" | "https") || uri.as_ref().and_then(|u| u.host()).is_none() {
            return Err(ConfigError::new(
                source,
                field("url"),
                format!(
                    "{} is not an http:// or https:// URL with a host",
                    crate::store::shown(&h.url)
                ),
            ));
        }
        for (k, kind) in h.kinds.iter().enumerate() {
            if !EventKind::ALL.into_iter().any(|e| kind_name(e) == kind) {
                let known: Vec<&str> = EventKind::ALL.into_iter().map(kind_name).collect();
                return Err(ConfigError::new(
                    source,
                    field(&format!("kinds[{k}]")),
                    format!(
                        "{} is not an event kind (known: {})",
                        crate::store::shown(kind),
                        known.join(", ")
                    ),
                ));
            }
        }
        for (list, values) in [
            ("skus", &h.skus),
            ("node_ids", &h.node_ids),
            ("segments", &h.segments),
            ("order_ids", &h.order_ids),
        ] {
            if let Some((k, v)) = values.iter().enumerate().find(|(_, v)| !valid_id(v)) {
                return Err(ConfigError::new(
                    source,
                    field(&format!("{list}[{k}]")),
                    format!("{} is not an id", crate::store::shown(v)),
                ));
            }
        }
        if h.filter().size() > MAX_FILTER_VALUES {
            return Err(ConfigError::new(
                source,
                field("kinds"),
                format!("the filter names more than {MAX_FILTER_VALUES} values"),
            ));
        }
        match (&h.secret, &h.secret_env) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    source,
                    field("secret"),
                    "set secret or secret_env, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    source,
                    field("secret"),
                    "every webhook is signed: set secret, or secret_env naming the variable that holds it",
                ));
            }
            (Some(s), None) if s.chars().count() < MIN_SECRET_CHARS => {
                return Err(ConfigError::new(
                    source,
                    field("secret"),
                    format!("must be at least {MIN_SECRET_CHARS} characters"),
                ));
            }
            _ => {}
        }
        if h.timeout_ms == 0 {
            return Err(ConfigError::new(
                source,
                field("timeout_ms"),
                "must be at least 1",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> WebhookSettings {
        WebhookSettings {
            name: "oms".into(),
            url: "http://127.0.0.1:8080/events".into(),
            kinds: vec!["low_stock".into()],
            skus: Vec::new(),
            node_ids: Vec::new(),
            segments: Vec::new(),
            order_ids: Vec::new(),
            secret: Some("a-secret-of-enough-length".into()),
            secret_env: None,
            timeout_ms: 5000,
        }
    }

    #[test]
    fn a_good_webhook_passes_and_its_filter_has_its_kinds() {
        validate(&[hook()], "server.toml").unwrap();
        assert_eq!(hook().filter().kinds, [EventKind::LowStock].into());
        assert!(!format!("{:?}", hook()).contains("a-secret"));
    }

    #[test]
    fn bad_webhooks_are_refused_naming_the_entry_and_field() {
        type Change = Box<dyn Fn(&mut WebhookSettings)>;
        let cases: Vec<(Change, &str, &str)> = vec![
            (
                Box::new(|h| h.url = "ftp://x/y".into()),
                "webhook[0].url",
                "not an http",
            ),
            (
                Box::new(|h| h.url = "http://".into()),
                "webhook[0].url",
                "not an http",
            ),
            (
                Box::new(|h| h.url = "/just/a/path".into()),
                "webhook[0].url",
                "not an http",
            ),
            (
                Box::new(|h| h.kinds = vec!["shipped".into()]),
                "webhook[0].kinds[0]",
                "not an event kind",
            ),
            (
                Box::new(|h| h.name = "a b".into()),
                "webhook[0].name",
                "not a name",
            ),
            (
                Box::new(|h| h.secret = Some("short".into())),
                "webhook[0].secret",
                "at least 16",
            ),
            (
                Box::new(|h| h.secret = None),
                "webhook[0].secret",
                "every webhook is signed",
            ),
            (
                Box::new(|h| h.secret_env = Some("HOOK_SECRET".into())),
                "webhook[0].secret",
                "not both",
            ),
            (
                Box::new(|h| h.skus = vec![String::new()]),
                "webhook[0].skus[0]",
                "not an id",
            ),
            (
                Box::new(|h| h.timeout_ms = 0),
                "webhook[0].timeout_ms",
                "at least 1",
            ),
        ];
        for (change, field, says) in cases {
            let mut h = hook();
            change(&mut h);
            let e = validate(&[h], "server.toml").unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        let e = validate(&[hook(), hook()], "server.toml").unwrap_err();
        assert_eq!(e.field, "webhook[1].name");
    }

    #[test]
    fn a_secret_from_the_environment_must_be_there_and_long_enough() {
        let mut h = hook();
        h.secret = None;
        h.secret_env = Some("HOOK".into());
        assert_eq!(
            h.secret(|_| Some("0123456789abcdef".into())).unwrap(),
            "0123456789abcdef"
        );
        assert!(h.secret(|_| Some("short".into())).is_err());
        assert!(h.secret(|_| None).unwrap_err().contains("HOOK"));
    }
}
