//! The `dom-router` binary: parses flags, sets up logging, loads config, binds the port and
//! hands over to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use dom_router::clock::{Clock, SystemClock};
use dom_router::config::{Config, ConfigSource, parse_stock};
use dom_router::domain::StrategyKind;
use dom_router::replay::{self, OrdersFile};
use dom_router::server::Listeners;
use dom_router::server::telemetry::{self, LogFormat};
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
        /// sourcing.default_strategy].
        #[arg(long, value_parser = strategy)]
        strategy: Option<StrategyKind>,
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
            json,
            examples,
        } => {
            let request = ReplayRequest {
                orders,
                config: source(config),
                against,
                stock,
                strategy,
                json,
                examples,
            };
            match replay(request) {
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

struct ReplayRequest {
    orders: PathBuf,
    config: ConfigSource,
    against: Option<PathBuf>,
    stock: Option<PathBuf>,
    strategy: Option<StrategyKind>,
    json: bool,
    examples: usize,
}

/// The report, or an exit code and a message: 2 for bad input (config, stock or orders, as
/// check-config does), 1 when the replay itself fails.
fn replay(r: ReplayRequest) -> Result<String, (u8, String)> {
    let bad = |e: String| (2, e);
    let load = |source| {
        Config::load(source, std::env::vars()).map_err(|e| bad(format!("invalid config: {e}")))
    };
    let base = load(r.config)?;
    let against = r.against.map(ConfigSource::Dir).map(load).transpose()?;
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))
    };
    let stock = match &r.stock {
        Some(path) => {
            let name = path.display().to_string();
            parse_stock(&name, &read(path)?, &base.network)
                .map_err(|e| bad(format!("invalid stock: {e}")))?
        }
        None => base.stock.clone(),
    };
    let orders_name = r.orders.display().to_string();
    let orders = OrdersFile::parse(
        &orders_name,
        &read(&r.orders)?,
        base.settings.server.max_lines_per_order,
    )
    .map_err(|e| bad(format!("invalid orders: {e}")))?;
    let options = replay::Options {
        strategy: r.strategy,
        start: orders
            .first_placed_at()
            .unwrap_or_else(|| SystemClock.now_millis()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("cannot start a runtime: {e}")))?;
    let replay_with = |config: &Config| {
        runtime
            .block_on(replay::run(config, &stock, &orders, &options))
            .map_err(|e| match e {
                replay::ReplayError::Order(e) => {
                    bad(format!("invalid orders for config {}: {e}", config.source))
                }
                e => (1, format!("replay failed: {e}")),
            })
    };
    let base_run = replay_with(&base)?;
    let against_run = against.as_ref().map(replay_with).transpose()?;
    let base_label = base.source.to_string();
    let against_label = against.as_ref().map(|c| c.source.to_string());
    let report = replay::Report {
        orders_file: &orders_name,
        base: replay::Labelled {
            config: &base_label,
            run: &base_run,
        },
        against: against_label
            .as_deref()
            .zip(against_run.as_ref())
            .map(|(config, run)| replay::Labelled { config, run }),
        examples: r.examples,
    };
    Ok(if r.json {
        format!("{:#}\n", report.json())
    } else {
        report.text()
    })
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
    let engine = dom_router::server::engine(config, Arc::new(SystemClock))
        .context("cannot open the stock store")?;
    dom_router::server::serve(
        listeners,
        engine,
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
