//! Look-ahead's prices as the service runs: one replica at a time (the holder of the
//! `lookahead` lease) computes them from the demand every replica counts, every
//! `lookahead.refresh_secs` and within a second of a stock change of
//! `lookahead.refresh_on_change_units` (it follows the event log, so a change any replica
//! applied counts), and publishes them in the store with a version; every replica checks the
//! version each second and takes up a newer table. Another replica takes over once
//! the holder's lease lapses. With look-ahead off in the rules, nothing is computed, and a
//! replica turns it on with the next reload.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::engine::Engine;

/// The lease's name in the store.
const LEASE: &str = "lookahead";

/// How often a replica looks for a newer table, and for the rules turning look-ahead on.
const CHECK: Duration = Duration::from_secs(1);

/// Keeps this replica's prices current, until `stop`.
pub(super) async fn run(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    use tokio::sync::broadcast::error::RecvError;
    let holder = crate::store::unique_token();
    let mut leader = false;
    let mut last_refresh: Option<tokio::time::Instant> = None;
    // a stock change since the last refresh large enough to compute prices again
    let mut moved = false;
    let mut live = None;
    let mut next_check = tokio::time::Instant::now();
    loop {
        if live.is_none() {
            live = engine.store().subscribe_events().await.ok();
        }
        let check = match live.as_mut() {
            Some(rx) => tokio::select! {
                next = rx.recv() => {
                    match next {
                        Ok(e) => moved |= leader && engine.stock_moved(&e),
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => live = None,
                    }
                    false
                }
                _ = tokio::time::sleep_until(next_check) => true,
                _ = stop.changed() => break,
            },
            None => tokio::select! {
                _ = tokio::time::sleep_until(next_check) => true,
                _ = stop.changed() => break,
            },
        };
        if !check {
            continue;
        }
        next_check = tokio::time::Instant::now() + CHECK;
        let settings = engine.rules().lookahead.clone();
        if !settings.enabled {
            continue;
        }
        let every = Duration::from_secs(settings.refresh_secs);
        // held for three refreshes, at least ten seconds; renewed every check
        let ttl_ms = (every.as_millis() as u64).saturating_mul(3).max(10_000);
        let now = engine.clock().now_millis();
        match engine.store().take_lease(LEASE, &holder, ttl_ms, now).await {
            Ok(true) => {
                if !leader {
                    info!("this replica computes look-ahead's prices");
                    leader = true;
                    // go on from the table another replica published
                    let _ = engine.load_prices().await;
                }
                if moved || last_refresh.is_none_or(|at| at.elapsed() >= every) {
                    moved = false;
                    last_refresh = Some(tokio::time::Instant::now());
                    match engine.refresh_prices().await {
                        Ok(p) => debug!(
                            version = p.version,
                            skus = p.by_sku.len(),
                            "look-ahead's prices computed"
                        ),
                        Err(e) => warn!(error = %e, "look-ahead's prices not computed"),
                    }
                }
            }
            Ok(false) => {
                if leader {
                    info!("another replica computes look-ahead's prices now");
                    leader = false;
                    last_refresh = None;
                }
                if let Err(e) = engine.load_prices().await {
                    debug!(error = %e, "look-ahead's prices not read; trying later");
                }
            }
            Err(e) => debug!(error = %e, "the look-ahead lease is not readable; trying later"),
        }
    }
    if leader {
        // let the lease go, so another replica takes over without waiting
        let now = engine.clock().now_millis();
        let _ = engine.store().take_lease(LEASE, &holder, 0, now).await;
    }
}
