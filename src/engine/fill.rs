//! Backorders that fill: units waiting for supply are planned again when supply arrives (a feed
//! update, a release, an expiry, a reroute giving units back) and on a retry sweep, in order of
//! the segment's priority (lower first), then of how long they have waited; units waiting
//! longer than the segment's `backorder_max_days` are cancelled.
//!
//! A fill is a reroute with nothing leaving a node: the store holds the new units and takes
//! them from the order's waiting units in one step, refusing if they no longer wait, so each
//! waiting unit is filled once whichever replica fills it. One replica at a time fills (the
//! caller holds a lease), in order, so supply goes to the orders it can serve in that order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tracing::{Instrument, debug, info_span, warn};

use super::Engine;
use super::reroute::{plan_of_nothing, segment_of};
use crate::clock::Millis;
use crate::error::Error;
use crate::store::reroute::{waited_ms, waiting_by_line};
use crate::store::{
    Allocation, Decision, DecisionKind, Fate, Gone, RerouteHold, RerouteOutcome, RerouteReason,
    Reservation, ReservationState, UnitFate, WaitingEntry,
};

/// How long a line listed in the index of waiting lines whose order has no reservation is left
/// there: a reserve notes its waiting lines before it writes the reservation, and may still be
/// writing it.
const INDEX_GRACE_MS: Millis = 60_000;

const MILLIS_PER_DAY: Millis = 86_400_000;

/// What a fill run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FillReport {
    /// Orders some of whose waiting units were filled.
    pub orders_filled: u64,
    pub units_filled: u64,
    /// Units cancelled for waiting longer than their segment allows.
    pub units_cancelled: u64,
}

/// A lease held while filling: renewed as the run goes, which stops if it is lost.
#[derive(Debug, Clone, Copy)]
pub struct FillLease<'a> {
    pub name: &'a str,
    pub holder: &'a str,
    pub ttl_ms: u64,
}

/// Orders a fill found nothing for, by id: a fingerprint of the on hand of their waiting skus
/// then. A checkout's fill passes them over until on hand changes (the replica holding the
/// fill lease tries them all, as units given back change no on hand).
#[derive(Debug, Default)]
pub(super) struct Tried(parking_lot::Mutex<HashMap<String, u64>>);

/// Orders this many are remembered at most; past it the memory starts again.
const TRIED_MAX: usize = 100_000;

impl Tried {
    /// Whether a fill found nothing for the order, against some on hand.
    #[cfg(test)]
    pub(super) fn knows(&self, order_id: &str) -> bool {
        self.0.lock().contains_key(order_id)
    }

    fn same(&self, order_id: &str, fingerprint: u64) -> bool {
        self.0.lock().get(order_id) == Some(&fingerprint)
    }

    fn note(&self, order_id: &str, fingerprint: Option<u64>) {
        let mut tried = self.0.lock();
        match fingerprint {
            Some(fp) => {
                if tried.len() >= TRIED_MAX {
                    tried.clear();
                }
                tried.insert(order_id.to_owned(), fp);
            }
            None => {
                tried.remove(order_id);
            }
        }
    }
}

/// A checkout's fill: only the orders of a segment whose priority is `priority` or better, and
/// not those found unfillable against the same on hand before.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ahead {
    pub(super) priority: i32,
}

/// A fingerprint of the on hand of these skus at every node.
fn on_hand_fingerprint<'a>(
    stock: &crate::store::StockView,
    skus: impl Iterator<Item = &'a str>,
) -> u64 {
    let mut text = String::new();
    let mut skus: Vec<&str> = skus.collect();
    skus.sort_unstable();
    skus.dedup();
    for sku in skus {
        let mut nodes: Vec<(&String, u64)> = stock
            .get(sku)
            .map(|m| m.iter().map(|(n, l)| (n, l.on_hand)).collect())
            .unwrap_or_default();
        nodes.sort_unstable();
        text.push_str(&format!("{sku}:{nodes:?};"));
    }
    crate::domain::fnv1a64(text.as_bytes())
}

/// One order's lines waiting, as the index lists them, and where it stands in the queue.
struct Waiting {
    priority: i32,
    since: Millis,
    order_id: String,
    entries: Vec<WaitingEntry>,
}

impl Engine {
    /// Tries the units waiting for these skus (every sku if none are named) against stock now:
    /// the orders in the order of their segment's priority, then of their oldest waiting line;
    /// each filled as far as stock and its segment's rules allow. Units past their segment's
    /// `backorder_max_days` are cancelled. With no skus named, the index is also brought in
    /// line with every order it lists. The service's filler runs one at a time across replicas
    /// (a lease); a checkout's fill may run beside it, each unit still filled once.
    pub async fn fill_waiting(&self, skus: &[String]) -> Result<FillReport, Error> {
        self.fill_waiting_under(skus, None).await
    }

    /// The fill a checkout makes before it plans: the orders of these skus ahead of it.
    pub(super) async fn fill_waiting_ahead(
        &self,
        skus: &[String],
        ahead: Ahead,
    ) -> Result<FillReport, Error> {
        self.fill_queue(skus, None, Some(ahead)).await
    }

    /// As [`fill_waiting`](Self::fill_waiting), renewing `lease` every third of its time as it
    /// goes, and stopping where it is lost (another replica fills from there).
    pub async fn fill_waiting_under(
        &self,
        skus: &[String],
        lease: Option<FillLease<'_>>,
    ) -> Result<FillReport, Error> {
        self.fill_queue(skus, lease, None).await
    }

    async fn fill_queue(
        &self,
        skus: &[String],
        lease: Option<FillLease<'_>>,
        ahead: Option<Ahead>,
    ) -> Result<FillReport, Error> {
        let entries = self
            .store
            .waiting_for(skus)
            .instrument(info_span!("store", op = "waiting_for"))
            .await?;
        let mut report = FillReport::default();
        if entries.is_empty() {
            return Ok(report);
        }
        let rules = self.rules();
        let mut by_order: BTreeMap<String, Waiting> = BTreeMap::new();
        for e in entries {
            let priority = rules
                .segments
                .get(&e.segment)
                .map_or(i32::MAX, |s| s.priority);
            let w = by_order.entry(e.order_id.clone()).or_insert(Waiting {
                priority,
                since: e.since,
                order_id: e.order_id.clone(),
                entries: Vec::new(),
            });
            w.since = w.since.min(e.since);
            w.entries.push(e);
        }
        let mut queue: Vec<Waiting> = by_order.into_values().collect();
        queue.sort_by(|a, b| {
            (a.priority, a.since, &a.order_id).cmp(&(b.priority, b.since, &b.order_id))
        });
        // skus no node has any stock of are not planned (an order waiting on them is only
        // looked at for its age)
        let all_skus: Vec<String> = queue
            .iter()
            .flat_map(|w| w.entries.iter().map(|e| e.sku.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let now = self.clock.now_millis();
        let stock = self.store.read_stock(&all_skus, now).await?;
        let supplied: BTreeSet<&str> = stock
            .iter()
            .filter(|(_, nodes)| nodes.values().any(|l| l.ats(true) > 0))
            .map(|(sku, _)| sku.as_str())
            .collect();
        let mut renewed = std::time::Instant::now();
        for w in &queue {
            if let Some(l) = lease
                && renewed.elapsed() >= Duration::from_millis(l.ttl_ms / 3)
            {
                renewed = std::time::Instant::now();
                let now = self.clock.now_millis();
                if !self
                    .store
                    .take_lease(l.name, l.holder, l.ttl_ms, now)
                    .await?
                {
                    debug!("the fill lease was lost; another replica fills from here");
                    break;
                }
            }
            let now = self.clock.now_millis();
            let max_days = rules
                .segments
                .get(&w.entries[0].segment)
                .and_then(|s| s.backorder_max_days);
            let overdue = max_days.is_some_and(|d| {
                w.entries
                    .iter()
                    .any(|e| e.since + i64::from(d) * MILLIS_PER_DAY <= now)
            });
            let fingerprint = on_hand_fingerprint(&stock, w.entries.iter().map(|e| e.sku.as_str()));
            if let Some(a) = ahead
                && (w.priority > a.priority || self.fill_tried.same(&w.order_id, fingerprint))
            {
                continue;
            }
            let supply = w.entries.iter().any(|e| supplied.contains(e.sku.as_str()));
            if !overdue && !supply {
                // the sweep of every sku also drops lines of orders settled meanwhile (a
                // release, an expiry), so that what the index counts stays true
                if skus.is_empty() {
                    let looked = match self.store.get_reservation(&w.order_id, now).await {
                        Ok(r) => self.reconcile(w, r.as_ref(), now).await,
                        Err(e) => Err(e.into()),
                    };
                    if let Err(e) = looked {
                        warn!(order_id = %w.order_id, error = %e, "waiting lines not looked at");
                    }
                }
                continue;
            }
            match self.settle_waiting(w, overdue, now).await {
                Ok((filled, cancelled)) => {
                    // found nothing against this on hand: a checkout passes the order over
                    // until on hand changes
                    self.fill_tried
                        .note(&w.order_id, (filled == 0).then_some(fingerprint));
                    if filled > 0 {
                        report.orders_filled += 1;
                        report.units_filled += filled;
                    }
                    report.units_cancelled += cancelled;
                }
                // one order that cannot be looked at does not hold up the others
                Err(e) => warn!(order_id = %w.order_id, error = %e, "waiting units not tried"),
            }
        }
        if report.units_filled > 0 {
            crate::metrics::backorder_units("filled", report.units_filled);
        }
        if report.units_cancelled > 0 {
            crate::metrics::backorder_units("cancelled", report.units_cancelled);
        }
        Ok(report)
    }

    /// Cancels the order's units past their time (when `overdue`), then fills what it can of
    /// the rest, and brings the index in line with the reservation. Units filled and cancelled.
    async fn settle_waiting(
        &self,
        w: &Waiting,
        overdue: bool,
        now: Millis,
    ) -> Result<(u64, u64), Error> {
        let (mut filled, mut cancelled) = (0, 0);
        let attempts = self.settings.sourcing.reserve_attempts;
        let mut expire_pending = overdue;
        for attempt in 1..=attempts {
            let Some(r) = self.store.get_reservation(&w.order_id, now).await? else {
                self.reconcile(w, None, now).await?;
                return Ok((filled, cancelled));
            };
            let hold = if expire_pending {
                self.expire_hold(&r, now)?
            } else {
                self.fill_hold(&r, now).await?
            };
            let Some(hold) = hold else {
                if expire_pending {
                    expire_pending = false;
                    continue;
                }
                self.reconcile(w, Some(&r), now).await?;
                return Ok((filled, cancelled));
            };
            let outcome = self.apply_reroute(&hold, now, "fill").await?;
            match outcome {
                RerouteOutcome::Done(after) => {
                    let units: u64 = hold.from_waiting.iter().map(|g| g.units).sum();
                    if hold.decision.kind == DecisionKind::Expire {
                        cancelled += units;
                        expire_pending = false;
                    } else {
                        filled += units;
                    }
                    self.reconcile(w, Some(&after), now).await?;
                    if hold.decision.kind == DecisionKind::Fill {
                        return Ok((filled, cancelled));
                    }
                }
                RerouteOutcome::Repeat(_) => {}
                RerouteOutcome::Changed | RerouteOutcome::Busy => {
                    debug!(order_id = %w.order_id, attempt, "the order changed under the fill; planning again");
                }
                RerouteOutcome::Insufficient { sku, node_id, .. } => {
                    debug!(order_id = %w.order_id, attempt, %sku, %node_id, "stock moved under the fill; planning again");
                }
            }
            tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
        }
        Ok((filled, cancelled))
    }

    /// The fill of what `r` has waiting, planned against stock now; `None` when nothing of it
    /// can be held (or nothing waits).
    async fn fill_hold(&self, r: &Reservation, now: Millis) -> Result<Option<RerouteHold>, Error> {
        if !open(r) || r.waiting.is_empty() {
            return Ok(None);
        }
        let Some(order) = &r.order else {
            return Ok(None);
        };
        let rules = self.rules();
        let segment = segment_of(&rules, r)?;
        let units: Vec<Gone> = waiting_by_line(&r.waiting)
            .into_iter()
            .map(|(line_id, sku, units, _)| Gone {
                line_id,
                sku,
                units,
            })
            .collect();
        let plan = self.plan_again(&rules, r, order, &units, None, now).await?;
        let new = Allocation::of_plan(&plan);
        if new.is_empty() {
            return Ok(None);
        }
        let from_waiting = per_line(new.iter().map(|a| (&a.line_id, &a.sku, a.quantity)));
        let fates = new
            .iter()
            .map(|a| UnitFate {
                line_id: a.line_id.clone(),
                sku: a.sku.clone(),
                units: a.quantity,
                fate: Fate::Filled {
                    node_id: a.node_id.clone(),
                },
            })
            .collect();
        let taken = Taken {
            kind: DecisionKind::Fill,
            from_waiting,
            new,
            fates,
            plan,
        };
        Ok(Some(taken.hold(r, segment, &rules.version, now)))
    }

    /// The cancelling of the units of `r` waiting longer than its segment allows; `None` when
    /// none do.
    fn expire_hold(&self, r: &Reservation, now: Millis) -> Result<Option<RerouteHold>, Error> {
        if !open(r) {
            return Ok(None);
        }
        let rules = self.rules();
        let segment = segment_of(&rules, r)?;
        let Some(days) = segment.backorder_max_days else {
            return Ok(None);
        };
        let due = now - i64::from(days) * MILLIS_PER_DAY;
        let from_waiting = per_line(
            r.waiting
                .iter()
                .filter(|w| w.since <= due)
                .map(|w| (&w.line_id, &w.sku, w.units)),
        );
        if from_waiting.is_empty() {
            return Ok(None);
        }
        let fates = from_waiting
            .iter()
            .map(|g| UnitFate {
                line_id: g.line_id.clone(),
                sku: g.sku.clone(),
                units: g.units,
                fate: Fate::Cancelled,
            })
            .collect();
        let plan = plan_of_nothing(
            &from_waiting,
            r.plan.strategy,
            &rules.version,
            format!(
                "waited longer than the {days} days segment {} allows",
                segment.name
            ),
        );
        let taken = Taken {
            kind: DecisionKind::Expire,
            from_waiting,
            new: Vec::new(),
            fates,
            plan,
        };
        Ok(Some(taken.hold(r, segment, &rules.version, now)))
    }

    /// Brings the index of waiting lines in line with the reservation (`None`: there is none):
    /// lines it shows waiting are noted as they are now, and lines listed as they are not are
    /// dropped (those of an order with no reservation once past [`INDEX_GRACE_MS`], as a
    /// reserve may still be writing it). A reserve or reroute writing waiting units notes them
    /// again once written, so a line dropped between its note and its write is listed again.
    async fn reconcile(
        &self,
        w: &Waiting,
        r: Option<&Reservation>,
        now: Millis,
    ) -> Result<(), Error> {
        let current = match r {
            Some(r) if open(r) => WaitingEntry::of(&r.order_id, &r.segment, &r.waiting),
            _ => Vec::new(),
        };
        let note: Vec<WaitingEntry> = current
            .iter()
            .filter(|c| !w.entries.contains(c))
            .cloned()
            .collect();
        let forget: Vec<WaitingEntry> = w
            .entries
            .iter()
            .filter(|e| !current.contains(e))
            .filter(|e| r.is_some() || e.since + INDEX_GRACE_MS <= now)
            .cloned()
            .collect();
        // noted first: a line still waiting is never missing from the index
        self.store.note_waiting(&note).await?;
        self.store.forget_waiting(&forget).await?;
        Ok(())
    }

    /// Units waiting per sku and segment, as the index lists them.
    pub async fn waiting_units(
        &self,
        skus: &[String],
    ) -> Result<HashMap<String, BTreeMap<String, u64>>, Error> {
        Ok(self.store.waiting_units(skus).await?)
    }
}

/// Units taken from an order's waiting units by a fill (held at `new`) or an expiry.
struct Taken {
    kind: DecisionKind,
    from_waiting: Vec<Gone>,
    new: Vec<Allocation>,
    fates: Vec<UnitFate>,
    plan: crate::domain::Plan,
}

impl Taken {
    /// The store's step: the decision, under an id of its own, and what it holds.
    fn hold(
        self,
        r: &Reservation,
        segment: &crate::domain::SegmentRules,
        version: &str,
        now: Millis,
    ) -> RerouteHold {
        let cancelled = match self.kind {
            DecisionKind::Expire => self.from_waiting.iter().map(|g| g.units).sum(),
            _ => 0,
        };
        let decision = Decision {
            kind: self.kind,
            at: now,
            reroute_id: format!("{}-{}", self.kind.as_str(), crate::store::unique_token()),
            digest: String::new(),
            node_id: String::new(),
            reason: RerouteReason::Other,
            rules_version: version.to_owned(),
            strategy: r.plan.strategy,
            fates: self.fates,
            plan: self.plan,
            waited_ms: waited_ms(&r.waiting, &self.from_waiting, now),
        };
        RerouteHold {
            order_id: r.order_id.clone(),
            node_id: String::new(),
            removes_stock: false,
            gone: Vec::new(),
            new: self.new,
            waiting: Vec::new(),
            from_waiting: self.from_waiting,
            use_safety_stock: segment.use_safety_stock,
            closed: segment.closed(),
            decision,
            cancelled,
        }
    }
}

/// Units per line, each line once, in the order first seen.
fn per_line<'a>(units: impl Iterator<Item = (&'a String, &'a String, u64)>) -> Vec<Gone> {
    let mut lines: Vec<Gone> = Vec::new();
    for (line_id, sku, n) in units {
        match lines.iter_mut().find(|g| &g.line_id == line_id) {
            Some(g) => g.units += n,
            None => lines.push(Gone {
                line_id: line_id.clone(),
                sku: sku.clone(),
                units: n,
            }),
        }
    }
    lines
}

/// Whether the reservation is held or committed: only then do its units wait.
fn open(r: &Reservation) -> bool {
    matches!(
        r.state,
        ReservationState::Held | ReservationState::Committed
    )
}
