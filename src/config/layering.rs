//! Where each server setting comes from: the embedded defaults, then `server.toml` of a config
//! directory, then `DOM_ROUTER__SECTION__KEY` environment variables, merged key by key. The
//! layer that set each value is remembered, so that an error names the file or variable the
//! bad value came from.

use std::collections::BTreeMap;

use super::{
    ConfigError, ConfigSource, ENV_PREFIX, SERVER_FILE, Settings, embedded, one_line, read,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, NETWORK_FILE, SEGMENTS_FILE};
    use std::path::PathBuf;

    fn no_env() -> std::iter::Empty<(String, String)> {
        std::iter::empty()
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
