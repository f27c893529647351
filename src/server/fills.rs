//! Backorders that fill as the service runs: every replica follows the event log, and the one
//! holding the fill lease tries the units waiting for the skus whose supply changed (a feed
//! update, a release, an expiry, a reroute giving units back), and every
//! `holds.fill_interval_ms` all of them (see `engine::fill`). One replica fills at a time, so
//! that the waiting orders are served in their order; another takes over once the lease lapses.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::engine::Engine;
use crate::events::{Event, EventKind};

/// The lease's name in the store.
const LEASE: &str = "fills";

/// How long changes are gathered before the skus they name are tried.
const FILL_BATCH: Duration = Duration::from_millis(50);

/// The skus whose supply an event may have raised.
fn supply_skus(e: &Event, skus: &mut BTreeSet<String>) {
    use EventKind::*;
    if matches!(
        e.kind,
        StockChanged | ReservationReleased | ReservationExpired | ReservationRerouted
    ) {
        skus.extend(e.skus().map(str::to_owned));
    }
}

/// Fills waiting units while this replica holds the fill lease, until `stop`.
pub(super) async fn run(engine: Arc<Engine>, every: Duration, mut stop: watch::Receiver<bool>) {
    let holder = crate::store::unique_token();
    // held for three rounds of the sweep, at least three seconds; renewed every round
    let ttl_ms = (every.as_millis() as u64).saturating_mul(3).max(3_000);
    let mut leader = false;
    let mut next_sweep = tokio::time::Instant::now() + every;
    let mut live = None;
    loop {
        if live.is_none() {
            live = engine.store().subscribe_events().await.ok();
        }
        // what to try: the skus of the changes that came, or every sku at the sweep
        let mut skus = BTreeSet::new();
        let sweep = match live.as_mut() {
            Some(rx) => tokio::select! {
                next = rx.recv() => match next {
                    Ok(e) => {
                        supply_skus(&e, &mut skus);
                        false
                    }
                    // a change missed is tried at the next sweep
                    Err(RecvError::Lagged(_)) => false,
                    Err(RecvError::Closed) => {
                        live = None;
                        false
                    }
                },
                _ = tokio::time::sleep_until(next_sweep) => true,
                _ = stop.changed() => break,
            },
            None => tokio::select! {
                _ = tokio::time::sleep_until(next_sweep) => true,
                _ = stop.changed() => break,
            },
        };
        if !sweep {
            if skus.is_empty() {
                continue;
            }
            tokio::time::sleep(FILL_BATCH).await;
            if let Some(rx) = live.as_mut() {
                loop {
                    match rx.try_recv() {
                        Ok(e) => supply_skus(&e, &mut skus),
                        Err(TryRecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    }
                }
            }
        } else {
            next_sweep = tokio::time::Instant::now() + every;
        }
        let now = engine.clock().now_millis();
        match engine.store().take_lease(LEASE, &holder, ttl_ms, now).await {
            Ok(true) => {
                if !leader {
                    info!("this replica fills waiting units");
                    leader = true;
                }
            }
            Ok(false) => {
                if leader {
                    info!("another replica fills waiting units now");
                    leader = false;
                }
                continue;
            }
            Err(e) => {
                debug!(error = %e, "the fill lease is not readable; trying later");
                continue;
            }
        }
        let skus: Vec<String> = if sweep {
            Vec::new()
        } else {
            skus.into_iter().collect()
        };
        let lease = crate::engine::FillLease {
            name: LEASE,
            holder: &holder,
            ttl_ms,
        };
        match engine.fill_waiting_under(&skus, Some(lease)).await {
            Ok(r) if r.units_filled > 0 || r.units_cancelled > 0 => debug!(
                orders = r.orders_filled,
                filled = r.units_filled,
                cancelled = r.units_cancelled,
                "waiting units filled"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "waiting units not tried"),
        }
    }
    if leader {
        // let the lease go, so another replica takes over without waiting
        let now = engine.clock().now_millis();
        let _ = engine.store().take_lease(LEASE, &holder, 0, now).await;
    }
}
