//! A reroute on Redis, single or Cluster, in steps like a cluster reserve, since the record
//! and each sku sit in different slots:
//! 1. the record notes the reroute (what leaves the node, what is held anew, the decision) and
//!    its deadline, after the record's entry in the expiry set is filed by that deadline;
//! 2. each sku it touches holds its new units beside the order's hold, pending, after checking
//!    the units leaving are still held (a shipment of the order at that sku waits from here);
//! 3. the record marks the reroute decided: from here it is only ever finished;
//! 4. each sku gives the units back at the node (and takes them off on hand when they do not
//!    exist) and makes the new units the order's, and the day's node capacity moves with them
//!    (the new nodes' limits are not checked);
//! 5. the record takes the new allocations and the decision, and reports the change.
//!
//! A refusal at step 2 undoes the reroute: the record forgets it first (so it can no longer
//! be decided), then each sku gives back what it held and refuses a hold of it arriving late.
//! A replica that stops before step 3 leaves a reroute that the sweep undoes the same way once
//! its deadline passes; one that stops after (or whose step 3 failed without an answer), one
//! the sweep finishes. Every step is idempotent, and marks per reroute note what is done, so
//! nothing is held twice or lost either way.

use futures_util::future::{join_all, try_join_all};
use redis::Value;
use tracing::warn;

use super::RedisStore;
use super::connection::Conn;
use super::keys::member;
use super::level::unreadable_level;
use super::record::{Record, Rerouting, coded_record, corrupt, int, items, text};
use crate::clock::Millis;
use crate::store::{RerouteHold, RerouteOutcome, StoreError};

/// Where a reroute is cut off, as by a replica dying: after its new units are held, or after
/// it is decided. For tests of the sweep that finishes or undoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "testkit"), allow(dead_code))]
pub enum RerouteCut {
    AfterHolds,
    AfterDecision,
}

impl RedisStore {
    pub(super) async fn reroute_on(
        &self,
        conn: &Conn,
        hold: RerouteHold,
        now: Millis,
    ) -> Result<RerouteOutcome, StoreError> {
        let outcome = self.reroute_steps(conn, hold, now, None).await?;
        outcome.ok_or_else(|| corrupt("a reroute cut off with no cut asked for"))
    }

    /// A reroute that stops where `cut` says, leaving the rest to the sweep.
    #[cfg(feature = "testkit")]
    pub async fn reroute_cut_off(
        &self,
        hold: RerouteHold,
        now: Millis,
        cut: RerouteCut,
    ) -> Result<Option<RerouteOutcome>, StoreError> {
        let conn = self.conn().await?;
        self.reroute_steps(&conn, hold, now, Some(cut)).await
    }

    /// The steps of a reroute (see the module docs); `None` when cut off by `cut`.
    async fn reroute_steps(
        &self,
        conn: &Conn,
        hold: RerouteHold,
        now: Millis,
        cut: Option<RerouteCut>,
    ) -> Result<Option<RerouteOutcome>, StoreError> {
        let order_id = hold.order_id.clone();
        let reroute_id = hold.decision.reroute_id.clone();
        let Some(record) = self.current_record(conn, &order_id, now).await? else {
            return Ok(Some(RerouteOutcome::Changed));
        };
        if record.history.iter().any(|d| d.reroute_id == reroute_id) {
            return Ok(Some(RerouteOutcome::Repeat(record.reservation()?)));
        }
        if record.rerouting.is_some() || record.releasing.is_some() {
            return Ok(Some(RerouteOutcome::Busy));
        }
        let token = super::keys::attempt_token();
        let deadline = now + self.inner.settings.pending_timeout_ms as i64;
        let record_key = self.inner.keys.record(&order_id);
        // (1) the record's entry in the expiry set by the deadline (never later than it was),
        // then the note: a replica stopping between the two leaves an entry the sweep finds
        // with nothing to do
        let entry = member(&record.token, &order_id);
        self.query::<i64>(
            conn,
            redis::cmd("ZADD")
                .arg(self.inner.keys.expiry())
                .arg("LT")
                .arg(deadline)
                .arg(&entry),
        )
        .await?;
        let rerouting = Rerouting {
            t: token.clone(),
            day: record.body.capacity_day,
            hold,
        };
        let note =
            serde_json::to_string(&rerouting).map_err(|e| corrupt(format!("a reroute: {e}")))?;
        let hold = &rerouting.hold;
        let mut args = vec![
            reroute_id,
            note,
            deadline.to_string(),
            hold.node_id.clone(),
            now.to_string(),
        ];
        for g in &hold.gone {
            args.extend([g.line_id.clone(), g.units.to_string()]);
        }
        let reply = self
            .eval(
                conn,
                &self.inner.scripts.record_reroute_begin,
                &[&record_key],
                &args,
            )
            .await?;
        let (code, current) = coded_record(reply)?;
        match code.as_str() {
            "ok" => {}
            "repeat" => {
                let current = current.ok_or_else(|| corrupt("a reroute without its record"))?;
                return Ok(Some(RerouteOutcome::Repeat(current.reservation()?)));
            }
            "busy" => return Ok(Some(RerouteOutcome::Busy)),
            _ => return Ok(Some(RerouteOutcome::Changed)),
        }
        // (2) every sku it touches: the new units held, the units leaving checked
        let skus = hold.skus();
        let held = join_all(
            skus.iter()
                .map(|sku| self.reroute_hold(conn, &rerouting, &record.token, sku)),
        )
        .await;
        let mut refusal = None;
        let mut failed = None;
        for (sku, reply) in skus.iter().zip(held) {
            match reply.and_then(|r| hold_reply(sku, r)) {
                Ok(None) => {}
                Ok(Some(outcome)) => {
                    refusal.get_or_insert(outcome);
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if refusal.is_some() || failed.is_some() {
            // only this call decides; refused, it is undone
            if let Err(e) = self.undo_reroute(conn, &order_id, &rerouting).await {
                warn!(order_id, error = %e, "a refused reroute was not undone; the sweep will");
            }
            return match failed {
                Some(e) => Err(e),
                None => Ok(Some(refusal.unwrap_or(RerouteOutcome::Changed))),
            };
        }
        if cut == Some(RerouteCut::AfterHolds) {
            return Ok(None);
        }
        // (3) decided. A call that fails here may have decided or not: it is left for the
        // sweep, which finishes it if it was and undoes it if not, never both.
        let decided = self
            .eval(
                conn,
                &self.inner.scripts.record_reroute_decide,
                &[&record_key],
                std::slice::from_ref(&token),
            )
            .await?;
        if int(&decided) != Some(1) {
            // a sweep found it past its deadline and forgot it: give back what it held
            self.undo_reroute(conn, &order_id, &rerouting).await?;
            return Ok(Some(RerouteOutcome::Changed));
        }
        if cut == Some(RerouteCut::AfterDecision) {
            return Ok(None);
        }
        // (4) and (5)
        let finished = self.finish_reroute(conn, &order_id, &rerouting).await?;
        Ok(Some(RerouteOutcome::Done(finished.reservation()?)))
    }

    /// Holds the new units of a reroute at one sku, and checks the units leaving are held.
    async fn reroute_hold(
        &self,
        conn: &Conn,
        rerouting: &Rerouting,
        record_token: &str,
        sku: &str,
    ) -> Result<Value, StoreError> {
        let hold = &rerouting.hold;
        let keys = &self.inner.keys;
        let (lv, ho, done, void) = (
            keys.levels(sku),
            keys.holds(sku),
            keys.reroute_done(sku, &rerouting.t),
            keys.reroute_void(sku, &rerouting.t),
        );
        let gone: Vec<_> = hold.gone.iter().filter(|g| g.sku == sku).collect();
        let mut args = vec![
            hold.order_id.clone(),
            rerouting.t.clone(),
            hold.access_arg(),
            record_token.to_owned(),
            hold.node_id.clone(),
            gone.len().to_string(),
        ];
        for g in gone {
            args.extend([g.line_id.clone(), g.units.to_string()]);
        }
        for a in hold.new.iter().filter(|a| a.sku == sku) {
            args.extend([a.line_id.clone(), a.node_id.clone(), a.quantity.to_string()]);
        }
        self.eval(
            conn,
            &self.inner.scripts.reroute_hold,
            &[&lv, &ho, &done, &void],
            &args,
        )
        .await
    }

    /// Undoes a reroute not decided: the record forgets it first, so that it can no longer be
    /// decided, then every sku gives back what it holds and refuses a hold of it arriving
    /// late. A reroute found decided is finished instead.
    async fn undo_reroute(
        &self,
        conn: &Conn,
        order_id: &str,
        rerouting: &Rerouting,
    ) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let forgot = self
            .eval(
                conn,
                &self.inner.scripts.record_reroute_abort,
                &[&keys.record(order_id)],
                std::slice::from_ref(&rerouting.t),
            )
            .await?;
        if int(&forgot) == Some(2) {
            self.finish_reroute(conn, order_id, rerouting).await?;
            return Ok(());
        }
        let args = [
            order_id.to_owned(),
            rerouting.t.clone(),
            self.retention_ms().to_string(),
        ];
        try_join_all(rerouting.hold.skus().iter().map(|sku| {
            let (lv, ho, void) = (
                keys.levels(sku),
                keys.holds(sku),
                keys.reroute_void(sku, &rerouting.t),
            );
            let args = &args;
            async move {
                self.eval(
                    conn,
                    &self.inner.scripts.reroute_undo,
                    &[&lv, &ho, &void],
                    args,
                )
                .await
            }
        }))
        .await?;
        Ok(())
    }

    /// Finishes a decided reroute: every sku, then the record. Idempotent.
    async fn finish_reroute(
        &self,
        conn: &Conn,
        order_id: &str,
        rerouting: &Rerouting,
    ) -> Result<Record, StoreError> {
        let keys = &self.inner.keys;
        let hold = &rerouting.hold;
        try_join_all(hold.skus().iter().map(|sku| {
            let (lv, ho, mark) = (
                keys.levels(sku),
                keys.holds(sku),
                keys.reroute_done(sku, &rerouting.t),
            );
            let mut args = vec![
                order_id.to_owned(),
                rerouting.t.clone(),
                hold.node_id.clone(),
                if hold.removes_stock { "1" } else { "0" }.to_owned(),
                self.retention_ms().to_string(),
            ];
            for g in hold.gone.iter().filter(|g| &g.sku == sku) {
                args.extend([g.line_id.clone(), g.units.to_string()]);
            }
            async move {
                self.eval(
                    conn,
                    &self.inner.scripts.reroute_swap,
                    &[&lv, &ho, &mark],
                    &args,
                )
                .await
            }
        }))
        .await?;
        self.move_capacity(conn, order_id, rerouting).await?;
        let json =
            |v: serde_json::Result<String>| v.map_err(|e| corrupt(format!("a reroute: {e}")));
        let decision = json(serde_json::to_string(std::slice::from_ref(&hold.decision)))?;
        let waiting = json(serde_json::to_string(&hold.waiting))?;
        let taken = json(serde_json::to_string(&hold.from_waiting))?;
        let lines = json(serde_json::to_string(&hold.lines_moved()))?;
        let reply = self
            .eval(
                conn,
                &self.inner.scripts.record_reroute_finish,
                &[&keys.record(order_id)],
                &[
                    rerouting.t.clone(),
                    self.retention_ms().to_string(),
                    decision,
                    waiting,
                    taken,
                    lines,
                ],
            )
            .await?;
        let (_, record) = coded_record(reply)?;
        record.ok_or_else(|| StoreError::NotFound(order_id.to_owned()))
    }

    /// Moves the order's capacity of its day with the units. Idempotent.
    async fn move_capacity(
        &self,
        conn: &Conn,
        order_id: &str,
        rerouting: &Rerouting,
    ) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let hold = &rerouting.hold;
        let day = rerouting.day;
        let (used, orders, mark) = (
            keys.capacity_used(day),
            keys.capacity_orders(day),
            keys.capacity_reroute_done(day, &rerouting.t),
        );
        let mut args = vec![
            order_id.to_owned(),
            rerouting.t.clone(),
            self.retention_ms().to_string(),
            hold.node_id.clone(),
            hold.gone.len().to_string(),
        ];
        for g in &hold.gone {
            args.extend([g.line_id.clone(), g.units.to_string()]);
        }
        for a in &hold.new {
            args.extend([a.node_id.clone(), a.quantity.to_string(), a.line_id.clone()]);
        }
        self.eval(
            conn,
            &self.inner.scripts.reroute_capacity,
            &[&used, &orders, &mark],
            &args,
        )
        .await?;
        Ok(())
    }

    /// The sweep's part: a reroute past its deadline is finished if it was decided, else
    /// undone.
    pub(super) async fn recover_reroute(
        &self,
        conn: &Conn,
        order_id: &str,
        rerouting: &Rerouting,
        decided: bool,
    ) -> Result<(), StoreError> {
        if decided {
            warn!(order_id, "finishing a reroute that was cut off");
            self.finish_reroute(conn, order_id, rerouting).await?;
        } else {
            warn!(order_id, "undoing a reroute that was cut off");
            self.undo_reroute(conn, order_id, rerouting).await?;
        }
        Ok(())
    }
}

/// What a sku's hold of new units said: `None` when held.
fn hold_reply(sku: &str, reply: Value) -> Result<Option<RerouteOutcome>, StoreError> {
    let values = items(reply);
    let code = values.first().and_then(text).unwrap_or_default();
    let number = |i: usize| values.get(i).and_then(int).unwrap_or(0).max(0) as u64;
    let node_id = values.get(1).and_then(text).unwrap_or_default();
    match code.as_str() {
        "ok" => Ok(None),
        "changed" | "conflict" => Ok(Some(RerouteOutcome::Changed)),
        "void" => Err(StoreError::Unavailable(
            "a reroute took longer than store.redis.pending_timeout_ms and was undone".into(),
        )),
        "short" | "busy" => Ok(Some(RerouteOutcome::Insufficient {
            sku: sku.to_owned(),
            node_id,
            wanted: number(2),
            available: number(3),
        })),
        "corrupt" => {
            let stored = values.get(2).and_then(text).unwrap_or_default();
            Err(unreadable_level(sku, &node_id, &stored))
        }
        other => Err(corrupt(format!("a reroute's hold answered {other:?}"))),
    }
}
