//! The gRPC server: the `dom.v1` services with standard health and reflection, the background
//! tasks (store health, hold expiry), and a graceful stop. [`run`] takes a bound listener and a
//! shutdown future, so tests start the real server in-process on `127.0.0.1:0`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{debug, info, warn};

mod access;
mod alerts;
mod deadline;
mod fills;
mod lookahead;
mod reload;
pub mod telemetry;
pub mod webhooks;

use crate::api::events::EventsApi;
use crate::api::{InventoryApi, Limits, NetworkApi, SourcingApi, pb};
use crate::clock::Clock;
use crate::config::{
    AuthMode, Config, ConfigError, ConfigSource, Settings, StoreKind, TlsSettings, redact_url,
};
use crate::engine::Engine;
use crate::store::{MemoryStore, RedisStore, StockStore, StoreError};
use access::{Access, AccessLayer};
use deadline::DeadlineLayer;

/// Accepted connections, with Nagle's algorithm off: replies are small and go at once, and
/// with it on a reply can wait for the peer's delayed ACK (tens of milliseconds).
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn
            && let Err(e) = stream.set_nodelay(true)
        {
            debug!(error = %e, "cannot set TCP_NODELAY");
        }
        conn
    })
}

/// The gRPC services whose health is reported, besides the server as a whole ("").
pub const SERVICES: [&str; 4] = [
    "dom.v1.Sourcing",
    "dom.v1.Inventory",
    "dom.v1.Network",
    "dom.v1.Events",
];

/// The health service name that stays SERVING for as long as the process runs, draining and
/// store outages included: what a liveness probe asks, so an outage of Redis does not restart
/// every replica.
pub const LIVENESS: &str = "liveness";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Webhook(String),
}

/// The ports a server answers on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// The gRPC API, with health and reflection.
    pub grpc: TcpListener,
    /// Health only, in plaintext and open, for probes.
    pub health: Option<TcpListener>,
    /// Prometheus metrics over HTTP.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    pub fn grpc(listener: TcpListener) -> Self {
        Self {
            grpc: listener,
            health: None,
            metrics: None,
        }
    }

    /// Binds every listener the settings ask for.
    pub async fn bind(settings: &crate::config::Settings) -> std::io::Result<Self> {
        async fn bind(addr: std::net::SocketAddr, what: &str) -> std::io::Result<TcpListener> {
            TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr} for {what}: {e}"))
            })
        }
        let grpc = bind(settings.server.listen, "gRPC").await?;
        let health = match settings.server.health_listen {
            Some(addr) => Some(bind(addr, "health").await?),
            None => None,
        };
        let metrics = match settings.metrics.listen {
            Some(addr) => Some(bind(addr, "metrics").await?),
            None => None,
        };
        Ok(Self {
            grpc,
            health,
            metrics,
        })
    }
}

/// Reads the files the settings name (TLS certificates and key, the tokens file) as serving
/// would, so `check-config` refuses what `serve` would.
pub fn check_files(settings: &crate::config::Settings) -> Result<(), ConfigError> {
    // the TLS files are parsed only when the server starts: check they hold PEM blocks
    if tls_config(&settings.tls)?.is_some() {
        check_pem(
            settings.tls.cert_file.as_deref(),
            "CERTIFICATE",
            "tls.cert_file",
        )?;
        check_pem(
            settings.tls.key_file.as_deref(),
            "PRIVATE KEY",
            "tls.key_file",
        )?;
        check_pem(
            settings.tls.client_ca_file.as_deref(),
            "CERTIFICATE",
            "tls.client_ca_file",
        )?;
    }
    Access::load(&settings.auth)?;
    Ok(())
}

/// A PEM file holding at least one block whose label ends with `label`.
fn check_pem(path: Option<&std::path::Path>, label: &str, field: &str) -> Result<(), ConfigError> {
    let Some(path) = path else { return Ok(()) };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            &path.display().to_string(),
            "",
            format!("cannot read {field}: {e}"),
        )
    })?;
    let found = text.lines().any(|l| {
        l.strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .is_some_and(|l| l.ends_with(label))
    });
    if found {
        Ok(())
    } else {
        Err(ConfigError::new(
            &path.display().to_string(),
            "",
            format!("{field}: holds no PEM {label} block"),
        ))
    }
}

/// The TLS set-up of the gRPC port, read from the files the settings name.
fn tls_config(tls: &TlsSettings) -> Result<Option<ServerTlsConfig>, ConfigError> {
    let read = |field: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            ConfigError::new(
                &path.display().to_string(),
                "",
                format!("cannot read {field}: {e}"),
            )
        })
    };
    let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) else {
        return Ok(None);
    };
    let identity = Identity::from_pem(read("tls.cert_file", cert)?, read("tls.key_file", key)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca_file {
        config = config.client_ca_root(Certificate::from_pem(read("tls.client_ca_file", ca)?));
    }
    Ok(Some(config))
}

/// Loads a config and reads the secret files it names as serving would. Secrets are often
/// mounted only where the server runs: those not present here are returned, unchecked.
pub fn check_config(source: ConfigSource) -> Result<(Config, Vec<PathBuf>), ConfigError> {
    let config = Config::load(source, std::env::vars())?;
    let mut present = config.settings.clone();
    let mut absent = Vec::new();
    for path in [
        &mut present.tls.cert_file,
        &mut present.tls.key_file,
        &mut present.tls.client_ca_file,
        &mut present.auth.tokens_file,
    ] {
        if path.as_ref().is_some_and(|p| !p.exists()) {
            absent.extend(path.take());
        }
    }
    check_files(&present)?;
    Ok((config, absent))
}

/// Logs what a config serves with: its source, network, rules version and store, and warns of
/// what only suits a demo.
pub fn describe(config: &Config) {
    info!(
        config = %config.source,
        nodes = config.network.len(),
        segments = config.segments.len(),
        rules_version = %config.rules_version,
        store = ?config.settings.store.kind,
        "config loaded"
    );
    if config.source == ConfigSource::Embedded {
        warn!(
            "running the embedded demo config: rules are fixed and, unless auth.mode is set, any caller may call anything"
        );
    }
    if let Some(endpoint) = &config.settings.tracing.otlp_endpoint {
        info!(%endpoint, sample_ratio = config.settings.tracing.sample_ratio, "exporting spans over OTLP");
    }
    if config.settings.store.kind == StoreKind::Redis {
        let redis = &config.settings.store.redis;
        info!(
            urls = ?redis.urls.iter().map(|u| redact_url(u)).collect::<Vec<_>>(),
            cluster = redis.cluster,
            key_prefix = %redis.key_prefix,
            "stock in Redis"
        );
    } else {
        warn!("stock in memory: this process does not share it with other replicas");
    }
}

/// The store the config asks for. A Redis store connects on first use, so the server starts
/// (and reports NOT_SERVING) while Redis is down.
pub fn open_store(config: &Config) -> Result<Arc<dyn StockStore>, StoreError> {
    let store = &config.settings.store;
    let seed = if store.seed_stock {
        config.stock.clone()
    } else {
        Vec::new()
    };
    Ok(match store.kind {
        StoreKind::Memory => Arc::new(MemoryStore::with_stock(&seed).with_events(
            config.settings.events.retention(),
            config.settings.events.watcher_buffer,
        )),
        StoreKind::Redis => Arc::new(RedisStore::new(&store.redis, seed)?.with_events(
            config.settings.events.retention(),
            config.settings.events.watcher_buffer,
        )),
    })
}

/// What the server serves: the engine, and the settings each other part is built from (the
/// API's limits, listeners, TLS, tokens, health checks, the sweep and rule reloads).
#[derive(Debug, Clone)]
pub struct App {
    pub engine: Arc<Engine>,
    pub settings: Settings,
}

/// The app for a config: the engine, built from its own settings and the rules, on the store
/// the config asks for.
pub fn app(config: &Config, clock: Arc<dyn Clock>) -> Result<App, StoreError> {
    let engine = Engine::new(
        config.rules(),
        (&config.settings).into(),
        open_store(config)?,
        clock,
    );
    Ok(App {
        engine: Arc::new(engine),
        settings: config.settings.clone(),
    })
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// Reports SERVING while the store answers, NOT_SERVING while it does not.
async fn watch_store(
    engine: Arc<Engine>,
    reporter: HealthReporter,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut serving = None;
    loop {
        let result = engine.store().ping().await;
        let ok = result.is_ok();
        if serving != Some(ok) && !*stop.borrow() {
            match &result {
                Ok(()) => info!("stock store answers; serving"),
                Err(e) => warn!(error = %e, "stock store does not answer; not serving"),
            }
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&reporter, status).await;
            serving = Some(ok);
        }
        // while the store is down, look again soon, so that health follows its recovery
        // within a fraction of a second rather than a whole interval (or several, when a
        // check itself waits out the store's timeout)
        let wait = if ok { every } else { every.min(RECOVERY_CHECK) };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// How often the store is checked while it does not answer.
const RECOVERY_CHECK: Duration = Duration::from_millis(200);

/// Returns the stock of expired holds, whichever replica gets there first, drops events past
/// their retention age, and reads how many holds are active for the metrics.
async fn sweep_holds(engine: Arc<Engine>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        match engine.expire_holds().await {
            Ok(0) => {}
            Ok(n) => debug!(expired = n, "expired holds returned their stock"),
            Err(e) => warn!(error = %e, "hold sweep failed"),
        }
        if let Err(e) = engine.trim_events().await {
            warn!(error = %e, "event log trim failed");
        }
        if let Ok(n) = engine.active_holds().await {
            crate::metrics::holds_active(n);
        }
    }
}

/// Serves the gRPC port alone until `shutdown` completes: [`serve`] with no other listeners
/// and no rule reloading.
pub async fn run(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve(Listeners::grpc(listener), app, None, shutdown).await
}

/// Serves until `shutdown` completes, then stops taking calls, lets in-flight ones finish
/// within the configured drain timeout, and stops the background tasks. With `rules`, the
/// rules of that config source are reloaded when they change.
pub async fn serve(
    listeners: Listeners,
    app: App,
    rules: Option<ConfigSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let App {
        engine,
        settings: s,
    } = app;
    let limits = Limits::from(&s.server);
    let max_bytes = s.server.max_message_bytes;
    let tls = tls_config(&s.tls)?;
    let access = Arc::new(Access::load(&s.auth)?);
    match access.mode() {
        AuthMode::Open => warn!("auth.mode is open: any caller may call any method"),
        AuthMode::Tokens => info!(clients = access.clients(), "calls need a client token"),
    }
    if access.mode() == AuthMode::Tokens && tls.is_none() {
        warn!(
            "tokens travel in plaintext: set tls.cert_file and tls.key_file, or keep the port on a trusted network"
        );
    }
    // recording starts with the first call, whether or not this process serves /metrics
    let _ = crate::metrics::handle();
    crate::metrics::rules_in_force(&engine.rules().version);

    let (reporter, health) = tonic_health::server::health_reporter();
    set_health(&reporter, ServingStatus::NotServing).await;
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = vec![
        tokio::spawn(watch_store(
            engine.clone(),
            reporter.clone(),
            Duration::from_millis(s.server.health_check_interval_ms),
            stop_rx.clone(),
        )),
        tokio::spawn(sweep_holds(
            engine.clone(),
            Duration::from_millis(s.holds.sweep_interval_ms),
            stop_rx.clone(),
        )),
        tokio::spawn(alerts::watch(engine.clone(), stop_rx.clone())),
        tokio::spawn(lookahead::run(engine.clone(), stop_rx.clone())),
    ];
    if s.holds.fill_interval_ms > 0 {
        tasks.push(tokio::spawn(fills::run(
            engine.clone(),
            Duration::from_millis(s.holds.fill_interval_ms),
            stop_rx.clone(),
        )));
    }
    for hook in webhooks::Hook::all(&s.webhook, |var| std::env::var(var).ok())
        .map_err(ServeError::Webhook)?
    {
        tasks.push(tokio::spawn(webhooks::run(
            engine.store().clone(),
            engine.clock().clone(),
            hook,
            stop_rx.clone(),
        )));
    }
    if let Some(source) = rules {
        tasks.push(tokio::spawn(reload::watch(
            engine.clone(),
            s.clone(),
            source,
            access.clone(),
            reload::hangups(),
            stop_rx.clone(),
        )));
    }
    // probes and scrapes go on while the gRPC port drains: liveness stays SERVING, readiness
    // says NOT_SERVING, and the last metrics can be read
    let (probes_stop_tx, probes_stop) = watch::channel(false);
    if let Some(listener) = listeners.metrics {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "metrics at http://{addr}/metrics");
        }
        tasks.push(tokio::spawn(crate::metrics::serve(
            listener,
            probes_stop.clone(),
        )));
    }
    if let Some(listener) = listeners.health {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "health (plaintext, for probes) listening");
        }
        let health = health.clone();
        let mut stopped = probes_stop.clone();
        tasks.push(tokio::spawn(async move {
            let stop = async move {
                let _ = stopped.changed().await;
            };
            if let Err(e) = Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(incoming(listener), stop)
                .await
            {
                warn!(error = %e, "health listener failed");
            }
        }));
    }

    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let sourcing =
        pb::sourcing_server::SourcingServer::new(SourcingApi::new(engine.clone(), limits))
            .max_decoding_message_size(max_bytes)
            .max_encoding_message_size(max_bytes);
    let inventory =
        pb::inventory_server::InventoryServer::new(InventoryApi::new(engine.clone(), limits))
            .max_decoding_message_size(max_bytes)
            .max_encoding_message_size(max_bytes);
    let network = pb::network_server::NetworkServer::new(NetworkApi::new(engine.clone()))
        .max_decoding_message_size(max_bytes)
        .max_encoding_message_size(max_bytes);
    let events = pb::events_server::EventsServer::new(EventsApi::new(
        engine.store().clone(),
        (&s.events).into(),
        stop_rx.clone(),
    ))
    .max_decoding_message_size(max_bytes)
    .max_encoding_message_size(max_bytes);

    let drain_reporter = reporter.clone();
    let signal = async move {
        shutdown.await;
        info!("shutting down: not serving, draining in-flight calls");
        set_health(&drain_reporter, ServingStatus::NotServing).await;
        let _ = stop_tx.send(true);
    };

    let listener = listeners.grpc;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, tls = tls.is_some(), "dom-router listening");
    }
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let serve = builder
        .layer(AccessLayer::new(access))
        .layer(DeadlineLayer::new(Duration::from_millis(
            s.server.request_timeout_ms,
        )))
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(sourcing)
        .add_service(inventory)
        .add_service(network)
        .add_service(events)
        .serve_with_incoming_shutdown(incoming(listener), signal);

    let mut draining = stop_rx.clone();
    let drain_timeout = Duration::from_millis(s.server.drain_timeout_ms);
    let deadline = async move {
        if draining.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(drain_timeout).await;
    };
    let result = tokio::select! {
        r = serve => r.map_err(ServeError::from),
        _ = deadline => {
            warn!(timeout_ms = s.server.drain_timeout_ms, "drain timeout passed with calls in flight; stopping");
            Ok(())
        }
    };
    let _ = probes_stop_tx.send(true);
    for task in tasks {
        task.abort();
    }
    info!("stopped");
    result
}
