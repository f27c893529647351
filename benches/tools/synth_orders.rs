//! Writes a day of synthetic demo orders as JSON lines for `dom-router replay`: destinations
//! at Spanish and Portuguese cities drawn by population, the demo skus by Zipf popularity, and
//! the segment mix of the cost replay benchmark, placed evenly from 08:00 to 20:00 UTC.
//! Deterministic for a seed, so the committed demo file can be made again:
//!
//! ```sh
//! cargo run --example synth-orders -- --count 1000 --seed 2026 > benches/data/orders-demo.jsonl
//! ```

use std::collections::BTreeSet;
use std::io::Write;

use chrono::{NaiveDate, TimeDelta};
use clap::Parser;
use dom_router::config::{Config, ConfigSource};
use dom_router::replay::OrderRecord;
use dom_router::synth::{self, MixedDay, OrderGen};

#[derive(Parser)]
#[command(about = "Writes synthetic demo orders as JSON lines")]
struct Args {
    /// Orders to write.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Seed of destinations, skus and line counts.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// The day the orders are placed, YYYY-MM-DD.
    #[arg(long, default_value = "2026-11-23")]
    day: NaiveDate,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = Config::load(ConfigSource::Embedded, std::iter::empty()).expect("demo config");
    let skus: BTreeSet<String> = config.stock.iter().map(|s| s.sku.clone()).collect();
    let cities = synth::cities(include_str!("../data/cities.csv"), &["ES", "PT"]);
    // line counts draw from a generator of their own, seeded apart from destinations and skus
    let day = MixedDay::new(
        OrderGen::new(cities, skus.into_iter().collect(), args.seed),
        args.seed.rotate_left(32),
    );
    let opening = args.day.and_hms_opt(8, 0, 0).expect("08:00").and_utc();
    let every = TimeDelta::seconds(12 * 3600 / args.count.max(1) as i64);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (i, order) in day.take(args.count).enumerate() {
        let placed_at = opening + every * i as i32;
        serde_json::to_writer(&mut out, &OrderRecord::new(&order, Some(placed_at)))?;
        writeln!(out)?;
    }
    out.flush()
}
