//! The expiry set and its sweep. Every attempt and hold is filed in the expiry set by when it
//! must be looked at; a sweeper claims each due entry for a few operation timeouts before it
//! settles it, so that replicas sweeping at once share the work out, and settling gives back
//! what an expired hold or an abandoned attempt holds, exactly once.

use std::time::Instant;

use futures_util::future::{join, try_join_all};
use futures_util::stream::{self, StreamExt};
use redis::Cmd;
use tracing::{debug, warn};

use super::RedisStore;
use super::connection::Conn;
use super::keys::{member, split_member};
use super::record::coded_record;
use crate::clock::Millis;
use crate::store::StoreError;

/// Due entries of the expiry set taken per round of a sweep.
const SWEEP_BATCH: isize = 256;

/// Due entries a refused reserve's sweep takes per round: few, so that it keeps to its budget.
const RESERVE_SWEEP_BATCH: isize = 8;

/// Orders a sweep works on at once.
const SWEEP_CONCURRENCY: usize = 32;

/// How long a sweeper's claim on a due entry lasts, in operation timeouts: long enough for the
/// calls that settle it in the common case, short enough that another sweeper soon takes over
/// one left unsettled (a call failed); a claim that lapses early only means work done twice,
/// which is idempotent.
const CLAIM_OPS: u64 = 2;

/// What one sweep did: holds it expired, entries it settled, and entries it found due but
/// claimed by another sweeper.
#[derive(Debug, Default)]
pub(super) struct SweepReport {
    pub(super) expired: u64,
    pub(super) settled: u64,
    pub(super) in_flight: u64,
}

impl RedisStore {
    /// Up to `limit` entries of the expiry set due by `now`: (member, score as stored).
    pub(super) async fn due_entries(
        &self,
        conn: &Conn,
        now: Millis,
        limit: isize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.query(conn, &self.due_lookup(now, limit)).await
    }

    /// The command that [`due_entries`](Self::due_entries) sends.
    pub(super) fn due_lookup(&self, now: Millis, limit: isize) -> Cmd {
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(self.inner.keys.expiry())
            .arg("-inf")
            .arg(now)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        cmd
    }

    pub(super) async fn zadd(
        &self,
        conn: &Conn,
        at: Millis,
        member: &str,
    ) -> Result<(), StoreError> {
        self.query::<i64>(
            conn,
            redis::cmd("ZADD")
                .arg(self.inner.keys.expiry())
                .arg(at)
                .arg(member),
        )
        .await
        .map(drop)
    }

    pub(super) async fn zrem(&self, conn: &Conn, member: &str) -> Result<(), StoreError> {
        self.query::<i64>(
            conn,
            redis::cmd("ZREM").arg(self.inner.keys.expiry()).arg(member),
        )
        .await
        .map(drop)
    }

    /// Gives back whatever an attempt holds of these skus and of its day's capacity. With
    /// `void`, also marks the attempt so that a hold it makes later is refused.
    pub(super) async fn undo(
        &self,
        conn: &Conn,
        order_id: &str,
        token: &str,
        skus: &[String],
        day: i64,
        void: bool,
    ) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let void_ttl = if void { self.retention_ms() } else { 0 }.to_string();
        let base = vec![order_id.to_owned(), token.to_owned(), void_ttl];
        let skus = skus.iter().map(|sku| {
            let (lv, ho, v) = (keys.levels(sku), keys.holds(sku), keys.sku_void(sku, token));
            let args = base.clone();
            async move {
                self.eval(conn, &self.inner.scripts.unhold, &[&lv, &ho, &v], &args)
                    .await
            }
        });
        let (used, orders, v) = (
            keys.capacity_used(day),
            keys.capacity_orders(day),
            keys.capacity_void(day, token),
        );
        let capacity_keys = [used.as_str(), orders.as_str(), v.as_str()];
        let capacity = self.eval(
            conn,
            &self.inner.scripts.capacity_give,
            &capacity_keys,
            &base,
        );
        let (skus, capacity) = join(try_join_all(skus), capacity).await;
        skus?;
        capacity?;
        Ok(())
    }

    /// Settles one attempt found in the expiry set: expires a hold past its expiry (giving its
    /// stock back), aborts an attempt past its deadline, re-files a hold not yet due, forgets
    /// one that is finished. Returns whether this call expired a hold.
    pub(super) async fn settle_attempt(
        &self,
        conn: &Conn,
        order_id: &str,
        token: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let key = self.inner.keys.record(order_id);
        let reply = self
            .eval(
                conn,
                &self.inner.scripts.record_expire,
                &[&key],
                &[
                    now.to_string(),
                    token.to_owned(),
                    self.retention_ms().to_string(),
                ],
            )
            .await?;
        let (code, record) = coded_record(reply)?;
        let member = member(token, order_id);
        let Some(record) = record else {
            // No such attempt: it finished and was rolled back, or its record was never made.
            self.zrem(conn, &member).await?;
            return Ok(false);
        };
        let changed = code == "changed";
        if let Some((rerouting, deadline, decided)) = &record.rerouting
            && matches!(record.state.as_str(), "held" | "committed")
        {
            if *deadline <= now {
                self.recover_reroute(conn, order_id, rerouting, *decided)
                    .await?;
                // looked at again at once: a hold that expired meanwhile expires then
                self.zadd(conn, now, &member).await?;
            } else {
                self.zadd(conn, *deadline, &member).await?;
            }
            return Ok(false);
        }
        if let Some((lines, deadline)) = &record.releasing
            && matches!(record.state.as_str(), "held" | "committed")
        {
            if *deadline <= now {
                warn!(order_id, "finishing a release that was cut off");
                self.complete_release(conn, order_id, &record, lines)
                    .await?;
            } else {
                self.zadd(conn, *deadline, &member).await?;
            }
            return Ok(false);
        }
        match record.state.as_str() {
            "expired" | "aborted" => {
                let aborted = record.state == "aborted";
                self.undo(
                    conn,
                    order_id,
                    token,
                    &record.skus(),
                    record.body.capacity_day,
                    aborted,
                )
                .await?;
                if aborted {
                    self.eval(
                        conn,
                        &self.inner.scripts.record_delete,
                        &[&key],
                        &[token.to_owned()],
                    )
                    .await?;
                    warn!(order_id, "an unfinished reservation was rolled back");
                }
                self.zrem(conn, &member).await?;
                Ok(changed && !aborted)
            }
            "held" => {
                // a replica that died between holding the record and confirming its units
                // left them pending: confirm them (a no-op when done)
                self.confirm(conn, order_id, token, &record.skus()).await?;
                self.zadd(conn, record.expires_at, &member).await?;
                Ok(false)
            }
            "pending" => {
                self.zadd(conn, record.deadline.min(record.expires_at), &member)
                    .await?;
                Ok(false)
            }
            "committed" => {
                // a commit cut off after the record changed left its units pending (when the
                // reserve's own confirm was cut off too) and its entry here
                self.confirm(conn, order_id, token, &record.skus()).await?;
                self.zrem(conn, &member).await?;
                Ok(false)
            }
            _ => {
                self.zrem(conn, &member).await?;
                Ok(false)
            }
        }
    }

    /// Settles what is due by `now` before a refused reserve tries again, within the
    /// operation timeout: whether it is worth trying again (something was due). No entry is
    /// taken up after half the timeout, and the sweep is cut off at the timeout; an entry cut
    /// off half-way stays claimed until its lease lapses, then any sweeper settles it (every
    /// step is idempotent). Entries another sweeper has claimed are not waited for: one stuck
    /// behind a stalled master would hold up every refused reserve until its claim lapsed.
    pub(super) async fn sweep_for_reserve(&self, conn: &Conn, now: Millis) -> bool {
        let limit = self.op_timeout();
        let budget = Instant::now() + limit / 2;
        let sweep = self.sweep_rounds(conn, now, RESERVE_SWEEP_BATCH, Some(budget));
        match tokio::time::timeout(limit, sweep).await {
            Ok(Ok(report)) => report.settled > 0 || report.in_flight > 0,
            Ok(Err(e)) => {
                debug!(error = %e, "sweep before a retry failed");
                false
            }
            Err(_) => {
                debug!("sweep before a retry cut off at the operation timeout");
                true
            }
        }
    }

    /// Claims and settles what is due by `now`; see
    /// [`StockStore::expire_holds`](crate::store::StockStore::expire_holds).
    pub(super) async fn sweep(&self, conn: &Conn, now: Millis) -> Result<SweepReport, StoreError> {
        self.sweep_rounds(conn, now, SWEEP_BATCH, None).await
    }

    /// Claims and settles what is due by `now`, up to `batch` entries a round, until nothing
    /// is left or (when given) `budget` has passed: no entry is claimed after it. Each entry is
    /// settled as soon as this sweeper has claimed it, so a claim or settle that fails leaves
    /// no other entry claimed but unsettled; the one that failed is taken over by another
    /// sweeper once its claim lapses.
    async fn sweep_rounds(
        &self,
        conn: &Conn,
        now: Millis,
        batch: isize,
        budget: Option<Instant>,
    ) -> Result<SweepReport, StoreError> {
        enum Entry {
            /// Settled by this sweeper; whether it expired a hold.
            Settled(bool),
            /// Claimed by another sweeper.
            Claimed,
            /// Left for later: the budget had passed.
            Left,
        }
        let mut report = SweepReport::default();
        let lease = (self.inner.settings.op_timeout_ms * CLAIM_OPS).max(100);
        // bounded: every entry settled is removed or filed later than `now`, and a round
        // that settles nothing ends the sweep
        for _ in 0..64 {
            if budget.is_some_and(|b| Instant::now() >= b) {
                break;
            }
            let due = self.due_entries(conn, now, batch).await?;
            let round = due.len();
            let outcomes: Vec<Result<Entry, StoreError>> = stream::iter(due)
                .map(|(m, at): (String, String)| async move {
                    if budget.is_some_and(|b| Instant::now() >= b) {
                        return Ok(Entry::Left);
                    }
                    let mut set = redis::cmd("SET");
                    set.arg(self.inner.keys.claim(&m, &at))
                        .arg("1")
                        .arg("NX")
                        .arg("PX")
                        .arg(lease);
                    let claimed: Option<String> = self.query(conn, &set).await?;
                    if claimed.is_none() {
                        return Ok(Entry::Claimed);
                    }
                    let expired = match split_member(&m) {
                        Some((token, order_id)) => {
                            self.settle_attempt(conn, order_id, token, now).await?
                        }
                        None => {
                            self.zrem(conn, &m).await?;
                            false
                        }
                    };
                    Ok(Entry::Settled(expired))
                })
                .buffer_unordered(SWEEP_CONCURRENCY)
                .collect()
                .await;
            let mut settled_any = false;
            let mut failed = None;
            for outcome in outcomes {
                match outcome {
                    Ok(Entry::Settled(expired)) => {
                        settled_any = true;
                        report.settled += 1;
                        report.expired += u64::from(expired);
                    }
                    Ok(Entry::Claimed) => report.in_flight += 1,
                    Ok(Entry::Left) => {}
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if (round as isize) < batch || !settled_any {
                break;
            }
        }
        Ok(report)
    }
}
