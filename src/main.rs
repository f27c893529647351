//! The `dom-router` binary: parses flags, sets up logging, loads config, binds the port and
//! hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dom_router::clock::SystemClock;
use dom_router::config::{Config, ConfigSource, StoreKind, redact_url};
use dom_router::server::Listeners;
use dom_router::telemetry::{self, LogFormat};
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(
    name = "dom-router",
    version,
    about = "Order sourcing and stock visibility over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gRPC server (with no flags: the embedded demo on 127.0.0.1:50051).
    Serve {
        /// Config directory (network.toml, segments.toml, optional server.toml and stock.csv);
        /// without it, the embedded demo config.
        #[arg(long, env = "DOM_ROUTER_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on; overrides server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Log format.
        #[arg(
            long,
            value_enum,
            default_value = "text",
            env = "DOM_ROUTER_LOG_FORMAT"
        )]
        log_format: LogFormat,
    },
    /// Validates a config directory (default: the embedded demo) and prints a summary.
    CheckConfig {
        /// Config directory to check.
        dir: Option<PathBuf>,
    },
}

fn source(dir: Option<PathBuf>) -> ConfigSource {
    dir.map_or(ConfigSource::Embedded, ConfigSource::Dir)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { dir } => match Config::load(source(dir), std::env::vars()) {
            Ok(config) => {
                print!("{}", config.summary());
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("invalid config: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve {
            config,
            listen,
            log_format,
        } => {
            let config = match Config::load(source(config), std::env::vars()) {
                Ok(config) => config,
                Err(e) => {
                    telemetry::init(log_format);
                    error!("invalid config: {e}");
                    return ExitCode::from(2);
                }
            };
            let result = serve(config, listen, log_format);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[tokio::main]
async fn serve(
    mut config: Config,
    listen: Option<SocketAddr>,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    // the span exporter's gRPC client lives on this runtime
    let telemetry = match telemetry::init_with(log_format, &config.settings.tracing) {
        Ok(t) => t,
        Err(e) => {
            telemetry::init(log_format);
            anyhow::bail!("cannot set up tracing: {e}");
        }
    };
    let result = run(&mut config, listen).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .ok();
    result
}

async fn run(config: &mut Config, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = listen {
        config.settings.server.listen = addr;
    }
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
    let listeners = Listeners::bind(&config.settings).await?;
    let engine = dom_router::server::engine(config, Arc::new(SystemClock))
        .context("cannot open the stock store")?;
    let rules = match &config.source {
        ConfigSource::Dir(_) => Some(config.source.clone()),
        ConfigSource::Embedded => None,
    };
    dom_router::server::serve(listeners, engine, rules, shutdown_signal()).await?;
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("SIGINT received"),
        _ = term => info!("SIGTERM received"),
    }
}
