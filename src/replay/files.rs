//! `dom-router replay` as the command line asks for it: the configs, the starting stock and
//! the orders read from files, one replay or two, and the report as text or JSON.

use std::path::PathBuf;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigSource, parse_stock};
use crate::domain::StrategyKind;

use super::{Labelled, Options, OrdersFile, ReplayError, Report, run};

/// What to replay, as named on the command line.
pub struct Request {
    pub orders: PathBuf,
    pub config: ConfigSource,
    pub against: Option<PathBuf>,
    pub stock: Option<PathBuf>,
    /// The strategy of the base replay, and of the second one unless `against_strategy` names
    /// another.
    pub strategy: Option<StrategyKind>,
    /// The strategy of the second replay; without `against`, it replays the base config, so
    /// two strategies compare on one config.
    pub against_strategy: Option<StrategyKind>,
    pub json: bool,
    pub examples: usize,
}

/// The report, or an exit code and a message: 2 for bad input (config, stock or orders, as
/// check-config does), 1 when the replay itself fails.
pub fn from_files(r: Request) -> Result<String, (u8, String)> {
    let bad = |e: String| (2, e);
    let load = |source| {
        Config::load(source, std::env::vars()).map_err(|e| bad(format!("invalid config: {e}")))
    };
    let base = load(r.config)?;
    let against = match (r.against, r.against_strategy) {
        (Some(dir), _) => Some(load(ConfigSource::Dir(dir))?),
        (None, Some(_)) => Some(base.clone()),
        (None, None) => None,
    };
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
    let options = Options {
        strategy: r.strategy,
        start: orders
            .first_placed_at()
            .unwrap_or_else(|| SystemClock.now_millis()),
    };
    let against_options = Options {
        strategy: r.against_strategy.or(r.strategy),
        ..options.clone()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (1, format!("cannot start a runtime: {e}")))?;
    let replay_with = |config: &Config, options: &Options| {
        runtime
            .block_on(run(config, &stock, &orders, options))
            .map_err(|e| match e {
                ReplayError::Order(e) => {
                    bad(format!("invalid orders for config {}: {e}", config.source))
                }
                e => (1, format!("replay failed: {e}")),
            })
    };
    let base_run = replay_with(&base, &options)?;
    let against_run = against
        .as_ref()
        .map(|c| replay_with(c, &against_options))
        .transpose()?;
    let base_label = base.source.to_string();
    let against_label = against.as_ref().map(|c| c.source.to_string());
    let report = Report {
        orders_file: &orders_name,
        base: Labelled {
            config: &base_label,
            run: &base_run,
        },
        against: against_label
            .as_deref()
            .zip(against_run.as_ref())
            .map(|(config, run)| Labelled { config, run }),
        examples: r.examples,
    };
    Ok(if r.json {
        format!("{:#}\n", report.json())
    } else {
        report.text()
    })
}
