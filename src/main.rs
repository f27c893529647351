//! The `dom-router` binary: parses flags, sets up logging, loads config, binds the port and
//! hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dom_router::clock::SystemClock;
use dom_router::config::{Config, ConfigSource};
use dom_router::domain::StrategyKind;
use dom_router::replay;
use dom_router::server::Listeners;
use dom_router::server::telemetry::{self, LogFormat};
use tracing::{error, info, warn};

/// Every decision allocates and frees many small maps and vectors (candidates, the instance,
/// the plan, the protobuf messages); mimalloc serves them with a fraction of the system
/// allocator's instructions. `benches/load` runs the server in process with the same allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Replays a file of orders on private in-memory stock, as the service would plan and
    /// hold them, and prints cost to serve, shipments, splits and refusals; with --against,
    /// for a second config too, side by side. Touches no live store.
    Replay {
        /// Orders, one JSON object per line: the dom.v1.Order message, plus placed_at.
        #[arg(long)]
        orders: PathBuf,
        /// Config directory; without it, the embedded demo config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A second config directory to replay the same orders against, from the same
        /// starting stock.
        #[arg(long)]
        against: Option<PathBuf>,
        /// Starting stock (a stock.csv) instead of the config's own.
        #[arg(long)]
        stock: Option<PathBuf>,
        /// Strategy for every order: optimal, nearest or priority [default: the config's
        /// sourcing.default_strategy]; with --against, for both replays unless
        /// --against-strategy names another.
        #[arg(long, value_parser = strategy)]
        strategy: Option<StrategyKind>,
        /// Strategy for the second replay; without --against, the same orders are replayed a
        /// second time on the same config with this strategy, side by side.
        #[arg(long, value_parser = strategy)]
        against_strategy: Option<StrategyKind>,
        /// Prints one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Orders decided differently to list (with --against).
        #[arg(long, default_value_t = 5)]
        examples: usize,
    },
}

fn strategy(name: &str) -> Result<StrategyKind, String> {
    [
        StrategyKind::Optimal,
        StrategyKind::Nearest,
        StrategyKind::Priority,
    ]
    .into_iter()
    .find(|k| k.as_str() == name)
    .ok_or_else(|| format!("{name:?} is not optimal, nearest or priority"))
}

fn source(dir: Option<PathBuf>) -> ConfigSource {
    dir.map_or(ConfigSource::Embedded, ConfigSource::Dir)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { dir } => match dom_router::server::check_config(source(dir)) {
            Ok((config, absent)) => {
                print!("{}", config.summary());
                for path in absent {
                    println!("not checked (not present here): {}", path.display());
                }
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("invalid config: {e}");
                ExitCode::from(2)
            }
        },
        Command::Replay {
            orders,
            config,
            against,
            stock,
            strategy,
            against_strategy,
            json,
            examples,
        } => {
            let request = replay::Request {
                orders,
                config: source(config),
                against,
                stock,
                strategy,
                against_strategy,
                json,
                examples,
            };
            match replay::from_files(request) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err((code, message)) => {
                    eprintln!("{message}");
                    ExitCode::from(code)
                }
            }
        }
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
    dom_router::server::describe(config);
    let listeners = Listeners::bind(&config.settings).await?;
    let app = dom_router::server::app(config, Arc::new(SystemClock))
        .context("cannot open the stock store")?;
    dom_router::server::serve(
        listeners,
        app,
        Some(config.source.clone()),
        shutdown_signal(),
    )
    .await?;
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
