//! Low-stock alerts as the service runs: every replica follows the event log and looks at the
//! alert thresholds of the skus its events name (see `events::alerts`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use crate::engine::Engine;

/// How long changes are gathered before their skus' alert states are looked at.
const ALERT_BATCH: Duration = Duration::from_millis(250);

/// Looks at the alert thresholds of every sku that changes, whichever replica changed it:
/// follows the event log and, every [`ALERT_BATCH`], evaluates the skus its events name. Every
/// replica does; the store reports each crossing once.
pub(super) async fn watch(engine: Arc<Engine>, mut stop: watch::Receiver<bool>) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    loop {
        let mut live = match engine.store().subscribe_events().await {
            Ok(live) => live,
            Err(e) => {
                debug!(error = %e, "alerts cannot follow the event log yet");
                tokio::select! {
                    _ = tokio::time::sleep(super::RECOVERY_CHECK) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        loop {
            let mut skus = std::collections::BTreeSet::new();
            let note = |e: &crate::events::Event, skus: &mut std::collections::BTreeSet<String>| {
                // a commit, or the last shipment of an order, moves no ATS (the shipment's own
                // stock event does): nothing to look at
                use crate::events::EventKind::{ReservationCommitted, ReservationFulfilled};
                if !e.kind.is_alert()
                    && !matches!(e.kind, ReservationCommitted | ReservationFulfilled)
                {
                    skus.extend(e.skus().map(str::to_owned));
                }
            };
            tokio::select! {
                next = live.recv() => match next {
                    Ok(e) => note(&e, &mut skus),
                    Err(RecvError::Lagged(missed)) => {
                        warn!(missed, "alerts fell behind the event log; skus changed meanwhile are looked at on their next change");
                        continue;
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = stop.changed() => return,
            }
            tokio::time::sleep(ALERT_BATCH).await;
            loop {
                match live.try_recv() {
                    Ok(e) => note(&e, &mut skus),
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            let skus: Vec<String> = skus.into_iter().collect();
            if let Err(e) = engine.evaluate_alerts(&skus).await {
                warn!(error = %e, skus = skus.len(), "alert thresholds not looked at");
            }
        }
    }
}
