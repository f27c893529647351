//! Live rule changes: planners edit `network.toml` and `segments.toml` (node costs,
//! capacities, segment rules) and the running server takes the change without a restart.
//!
//! The config directory is watched for file events (a Kubernetes ConfigMap update swaps a
//! symlink, which shows as events on the directory), read every `server.reload_interval_ms`
//! in case an event was missed, and read on SIGHUP. A change is loaded and validated whole
//! before it replaces anything: one that fails is refused and logged, and the rules in force
//! stay. Calls already running finish with the rules they started with. The tokens file is
//! read again at the same moments, so tokens rotate the same way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::access::Access;
use crate::config::{ConfigSource, RulesFiles, SERVER_FILE, Settings, check_solver};
use crate::domain::Rules;
use crate::engine::Engine;
use crate::sourcing::optimal::HIGHS_BUILT;

/// How long changed files must stay the same before they are read as a change (an editor, a
/// copy or a ConfigMap update writes more than one file, and not at once).
const SETTLE: Duration = Duration::from_millis(250);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The files hold the rules in force already.
    Unchanged,
    /// New rules are in force.
    Applied { version: String, previous: String },
    /// The files do not validate; the rules in force stay.
    Refused(String),
}

/// Rules a running server may take: on a binary without HiGHS, a network on which
/// `sourcing.solver = "auto"` could need it is refused, as it is at start.
fn servable(rules: Rules, settings: &Settings, highs_built: bool) -> Result<Rules, String> {
    check_solver(settings, &rules.network, highs_built, "network.toml")
        .map_err(|e| e.to_string())?;
    Ok(rules)
}

/// Reads the rules of `source` and puts them in force if they changed and validate.
pub async fn reload_rules(engine: &Engine, settings: &Settings, source: &ConfigSource) -> Outcome {
    let current = engine.rules().version.clone();
    let loaded = {
        let source = source.clone();
        tokio::task::spawn_blocking(move || read_settled(&source, &current)).await
    };
    let rules = match loaded {
        Ok(Ok(Some(rules))) => match servable(rules, settings, HIGHS_BUILT) {
            Ok(rules) => rules,
            Err(e) => return Outcome::Refused(e),
        },
        Ok(Ok(None)) => return Outcome::Unchanged,
        Ok(Err(e)) => return Outcome::Refused(e),
        Err(e) => return Outcome::Refused(format!("loading the rules failed: {e}")),
    };
    let previous = engine.rules().version.clone();
    if rules.version == previous {
        return Outcome::Unchanged;
    }
    let version = rules.version.clone();
    engine.replace_rules(rules);
    Outcome::Applied { version, previous }
}

/// Files that differ from the rules in force (`current`) are read again after a moment until
/// two reads agree, so a copy or an edit caught half-way, or the two files read either side of
/// a ConfigMap update, is never taken for a change. `None`: unchanged.
fn read_settled(source: &ConfigSource, current: &str) -> Result<Option<Rules>, String> {
    let mut files = RulesFiles::read(source).map_err(|e| e.to_string())?;
    if files.version() == current {
        return Ok(None);
    }
    for _ in 0..20 {
        std::thread::sleep(SETTLE);
        let again = RulesFiles::read(source).map_err(|e| e.to_string())?;
        if again == files {
            return files.parse().map(Some).map_err(|e| e.to_string());
        }
        files = again;
    }
    Err("the rule files kept changing for 5 s; trying again on the next change".into())
}

/// Watches the config and reloads until `stop` turns true.
///
/// `hangups` yields on SIGHUP (see [`hangups`]); it is made by the caller before anything else
/// runs, as a SIGHUP that arrives with no handler ends the process.
pub async fn watch(
    engine: Arc<Engine>,
    settings: Settings,
    source: ConfigSource,
    access: Arc<Access>,
    mut hangups: mpsc::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let every = Duration::from_millis(settings.server.reload_interval_ms);
    let watch_files = settings.server.watch_config;
    let ConfigSource::Dir(dir) = &source else {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                Some(()) = hangups.recv() => {
                    info!("SIGHUP: the embedded config has nothing to reload");
                }
                else => return,
            }
        }
    };
    let (events_tx, mut events) = mpsc::unbounded_channel::<()>();
    let _watcher = watch_files.then(|| file_events(dir.clone(), events_tx));
    let server_toml = std::fs::read(dir.join(SERVER_FILE)).ok();
    let mut last_refusal: Option<String> = None;
    let mut last_tokens_error: Option<String> = None;
    let mut server_toml_noted = false;
    let mut poll = tokio::time::interval(if every.is_zero() {
        Duration::from_secs(86_400 * 365)
    } else {
        every
    });
    poll.tick().await;
    loop {
        let why = tokio::select! {
            _ = stop.changed() => return,
            Some(()) = events.recv() => {
                while events.try_recv().is_ok() {}
                "file change"
            }
            Some(()) = hangups.recv() => "SIGHUP",
            _ = poll.tick(), if !every.is_zero() => "poll",
        };
        match reload_rules(&engine, &settings, &source).await {
            Outcome::Unchanged => {
                if why == "SIGHUP" {
                    info!(version = %engine.rules().version, "SIGHUP: rules unchanged");
                }
                last_refusal = None;
            }
            Outcome::Applied { version, previous } => {
                crate::metrics::rules_reload(true);
                let rules = engine.rules();
                info!(
                    %version, %previous, trigger = why,
                    nodes = rules.network.len(), segments = rules.segments.len(),
                    "rules changed; new decisions use them"
                );
                last_refusal = None;
            }
            Outcome::Refused(reason) => {
                // a broken file stays broken between polls: say so once per distinct problem
                if last_refusal.as_deref() != Some(reason.as_str()) {
                    crate::metrics::rules_reload(false);
                    error!(
                        error = %reason, trigger = why, version = %engine.rules().version,
                        "rule change refused; the rules in force stay"
                    );
                    last_refusal = Some(reason);
                }
            }
        }
        // file reads stay off the async workers
        let (tokens, server_toml_changed) = {
            let access = access.clone();
            let path = dir.join(SERVER_FILE);
            let at_start = server_toml.clone();
            match tokio::task::spawn_blocking(move || {
                (access.reload_tokens(), std::fs::read(path).ok() != at_start)
            })
            .await
            {
                Ok(read) => read,
                Err(_) => continue,
            }
        };
        match tokens {
            Ok(true) => {
                info!(
                    clients = access.clients(),
                    "tokens file changed; new tokens in force"
                );
                last_tokens_error = None;
            }
            Ok(false) => last_tokens_error = None,
            Err(e) => {
                let reason = e.to_string();
                if last_tokens_error.as_deref() != Some(reason.as_str()) {
                    error!(error = %reason, "tokens file refused; the tokens in force stay");
                    last_tokens_error = Some(reason);
                }
            }
        }
        if !server_toml_noted && server_toml_changed {
            warn!("server.toml changed; server settings apply on the next restart");
            server_toml_noted = true;
        }
    }
}

/// File events in `dir`, as a bare "something changed"; `None` (polling only) if the platform
/// will not watch.
fn file_events(dir: PathBuf, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot watch the config directory; reading it by polling only");
                return None;
            }
        };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        warn!(error = %e, dir = %dir.display(), "cannot watch the config directory; reading it by polling only");
        return None;
    }
    Some(watcher)
}

/// SIGHUPs as a stream of `()`, from the moment this is called; never yields where there are
/// no such signals. Call it inside the runtime.
pub fn hangups() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut s) => {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        if tx.send(()).await.is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => warn!(error = %e, "cannot listen for SIGHUP"),
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn rules_that_would_need_highs_are_refused_by_a_binary_without_it() {
        let config = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
        let mut settings = config.settings.clone();
        // 31 nodes × 1,000 lines passes the 15,000 pairs past which `auto` hands a model to HiGHS
        settings.server.max_lines_per_order = 1000;
        let refused = servable(config.rules(), &settings, false).unwrap_err();
        assert!(
            refused.starts_with("network.toml: sourcing.solver:")
                && refused.contains("`highs` feature"),
            "{refused}"
        );
        assert!(servable(config.rules(), &settings, true).is_ok());
        settings.server.max_lines_per_order = 200;
        assert!(servable(config.rules(), &settings, false).is_ok());
    }
}
