//! A reserve on a Redis Cluster, where the order's record, each sku and the day's capacity
//! sit in different slots: the record is written pending, each sku and the capacity are held
//! atomically and idempotently under the attempt's token, then the record becomes held; a
//! replica gives back what it held when a step fails, and a sweep does when the replica died.

use std::time::{Duration, Instant};

use futures_util::future::{join, join_all, try_join_all};
use redis::Value;
use tracing::warn;

use super::RedisStore;
use super::capacity::{MILLIS_PER_DAY, capacity_entries};
use super::connection::Conn;
use super::keys::member;
use super::level::unreadable_level;
use super::record::{coded_record, corrupt, distinct_skus, int, items, text};
use crate::clock::Millis;
use crate::store::{HoldRequest, ReserveOutcome, StoreError};

/// How long a reserve waits for units held by other attempts still in flight.
const BUSY_WAIT: Duration = Duration::from_secs(2);

enum Verdict {
    Held,
    /// Held by attempts still in flight; worth waiting for.
    Busy(ReserveOutcome),
    Refused(ReserveOutcome),
}

impl RedisStore {
    /// A reserve on a cluster, in steps (see the module docs): the record, pending; every sku
    /// and the capacity, held under the attempt's token; the record, held. What was held is
    /// given back if a step fails.
    pub(super) async fn reserve_in_steps(
        &self,
        conn: &Conn,
        request: HoldRequest,
        token: String,
        deadline: Millis,
        create_args: [String; 7],
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        let record_key = self.inner.keys.record(&request.order_id);
        let member = member(&token, &request.order_id);
        // (1) its place in the expiry set, then the record, pending: a replica killed between
        // the two leaves an entry a sweep finds without a record and drops, never a pending
        // record no sweep would find
        let mut taken_over = false;
        loop {
            self.zadd(conn, deadline.min(request.expires_at), &member)
                .await?;
            let created = self
                .eval(
                    conn,
                    &self.inner.scripts.record_create,
                    &[&record_key],
                    &create_args,
                )
                .await;
            let (code, existing) = coded_record(created?)?;
            if code == "created" {
                break;
            }
            self.zrem(conn, &member).await?;
            let existing = existing.ok_or_else(|| corrupt("an existing record without fields"))?;
            match self
                .existing_outcome(conn, &request, existing, taken_over, now)
                .await?
            {
                Some(outcome) => return Ok(outcome),
                None => taken_over = true,
            }
        }
        // (2) every sku and the capacity; (3) the record becomes held
        let skus = distinct_skus(&request.allocations);
        let held = self.hold_all(conn, &request, &token, &skus, now).await;
        let finished = match &held {
            Ok(None) => {
                // The units stop being pending as the record becomes held. Confirming is only a
                // hint to other attempts (whether to wait), so it may run alongside: if the
                // record cannot be finished, the rollback gives the units back either way.
                let confirms = self.confirm(conn, &request.order_id, &token, &skus);
                // The expiry set keeps the attempt's deadline: most holds are committed before
                // it comes, and a sweep files the rest by their expiry then.
                let (finish, confirmed) = join(
                    self.eval(
                        conn,
                        &self.inner.scripts.record_finish,
                        &[&record_key],
                        std::slice::from_ref(&token),
                    ),
                    confirms,
                )
                .await;
                if let Err(e) = confirmed {
                    warn!(order_id = %request.order_id, error = %e, "holds left pending");
                }
                int(&finish?) == Some(1)
            }
            _ => false,
        };
        if finished {
            return self.created(conn, request, now).await;
        }
        // Not held: give back whatever this attempt holds, then forget it. If this fails too,
        // the attempt's deadline brings a sweep to do it.
        let rollback = async {
            self.undo(
                conn,
                &request.order_id,
                &token,
                &skus,
                request.capacity_day,
                false,
            )
            .await?;
            self.eval(
                conn,
                &self.inner.scripts.record_delete,
                &[&record_key],
                std::slice::from_ref(&token),
            )
            .await?;
            self.zrem(conn, &member).await
        };
        if let Err(e) = rollback.await {
            warn!(order_id = %request.order_id, error = %e, "rollback failed; the sweep will finish it");
        }
        match held {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => Err(StoreError::Unavailable(format!(
                "the reservation of order {:?} took longer than store.redis.pending_timeout_ms and was rolled back",
                request.order_id
            ))),
            Err(e) => Err(e),
        }
    }

    /// One sku's hold for an attempt.
    async fn hold_sku(
        &self,
        conn: &Conn,
        request: &HoldRequest,
        token: &str,
        sku: &str,
    ) -> Result<Value, StoreError> {
        let keys = &self.inner.keys;
        let (lv, ho, v) = (keys.levels(sku), keys.holds(sku), keys.sku_void(sku, token));
        let mut args = vec![
            request.order_id.clone(),
            token.to_owned(),
            request.access_arg(),
        ];
        for a in request.allocations.iter().filter(|a| a.sku == sku) {
            args.extend([a.line_id.clone(), a.node_id.clone(), a.quantity.to_string()]);
        }
        self.eval(conn, &self.inner.scripts.hold, &[&lv, &ho, &v], &args)
            .await
    }

    /// The day's node capacity for an attempt.
    async fn take_capacity(
        &self,
        conn: &Conn,
        request: &HoldRequest,
        token: &str,
        now: Millis,
    ) -> Result<Value, StoreError> {
        let per_line = capacity_entries(&request.allocations);
        if per_line.is_empty() {
            return Ok(Value::Array(vec![Value::SimpleString("ok".into())]));
        }
        let keys = &self.inner.keys;
        let day = request.capacity_day;
        let (used, orders, v) = (
            keys.capacity_used(day),
            keys.capacity_orders(day),
            keys.capacity_void(day, token),
        );
        let mut args = vec![
            request.order_id.clone(),
            token.to_owned(),
            // the day's counters outlive the day by a day, then go
            ((day + 2) * MILLIS_PER_DAY - now)
                .max(request.expires_at - now)
                .max(1)
                .to_string(),
            per_line.len().to_string(),
        ];
        for ((node, line), units) in &per_line {
            args.extend([node.to_string(), units.to_string(), line.to_string()]);
        }
        for (node, limit) in &request.capacity_limits {
            args.extend([node.clone(), limit.to_string()]);
        }
        self.eval(
            conn,
            &self.inner.scripts.capacity_take,
            &[&used, &orders, &v],
            &args,
        )
        .await
    }

    /// Holds every sku and the day's capacity for an attempt whose record is written; `None`
    /// when all is held, else why not (the caller gives back what was held).
    ///
    /// All skus are tried at once. A sku whose units are held only by other attempts still in
    /// flight is "busy": then the skus after it (in sku order) are given back and it and the
    /// rest are held one at a time, waiting on each while it is busy. Holding only skus below
    /// the one waited on means no two attempts ever wait on each other, and waiting means an
    /// order is refused only for units that stay held, as if the attempts had run one by one.
    async fn hold_all(
        &self,
        conn: &Conn,
        request: &HoldRequest,
        token: &str,
        skus: &[String],
        now: Millis,
    ) -> Result<Option<ReserveOutcome>, StoreError> {
        let holds = skus
            .iter()
            .map(|sku| self.hold_sku(conn, request, token, sku));
        let (holds, capacity) = join(
            join_all(holds),
            self.take_capacity(conn, request, token, now),
        )
        .await;
        let mut busy_from = None;
        for (i, (sku, reply)) in skus.iter().zip(holds).enumerate() {
            match self.hold_verdict(request, sku, reply?)? {
                Verdict::Held => {}
                Verdict::Busy(_) => {
                    busy_from.get_or_insert(i);
                }
                Verdict::Refused(outcome) => return Ok(Some(outcome)),
            }
        }
        match self.hold_verdict(request, "", capacity?)? {
            Verdict::Held => {}
            Verdict::Busy(outcome) | Verdict::Refused(outcome) => return Ok(Some(outcome)),
        }
        let Some(first) = busy_from else {
            return Ok(None);
        };
        let later = &skus[first + 1..];
        if !later.is_empty() {
            let args = vec![request.order_id.clone(), token.to_owned(), "0".to_owned()];
            let gives = later.iter().map(|sku| {
                let keys = &self.inner.keys;
                let (lv, ho, v) = (keys.levels(sku), keys.holds(sku), keys.sku_void(sku, token));
                let args = &args;
                async move {
                    self.eval(conn, &self.inner.scripts.unhold, &[&lv, &ho, &v], args)
                        .await
                }
            });
            try_join_all(gives).await?;
        }
        let waited = Instant::now();
        for sku in &skus[first..] {
            let mut pause = Duration::from_micros(200);
            loop {
                let reply = self.hold_sku(conn, request, token, sku).await?;
                match self.hold_verdict(request, sku, reply)? {
                    Verdict::Held => break,
                    Verdict::Refused(outcome) => return Ok(Some(outcome)),
                    Verdict::Busy(outcome) => {
                        if waited.elapsed() > BUSY_WAIT {
                            return Ok(Some(outcome));
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(5));
                    }
                }
            }
        }
        Ok(None)
    }

    /// What a hold or capacity script said.
    fn hold_verdict(
        &self,
        request: &HoldRequest,
        sku: &str,
        reply: Value,
    ) -> Result<Verdict, StoreError> {
        let values = items(reply);
        let code = values.first().and_then(text).unwrap_or_default();
        let number = |i: usize| values.get(i).and_then(int).unwrap_or(0).max(0) as u64;
        let node_id = values.get(1).and_then(text).unwrap_or_default();
        let short = || ReserveOutcome::Insufficient {
            sku: sku.to_owned(),
            node_id: node_id.clone(),
            wanted: number(2),
            available: number(3),
        };
        Ok(match code.as_str() {
            "ok" => Verdict::Held,
            "busy" => Verdict::Busy(short()),
            "short" => Verdict::Refused(short()),
            "over" => Verdict::Refused(ReserveOutcome::OverCapacity {
                node_id: node_id.clone(),
                wanted: number(2),
                available: number(3),
            }),
            "corrupt" => {
                let stored = values.get(2).and_then(text).unwrap_or_default();
                return Err(unreadable_level(sku, &node_id, &stored));
            }
            "void" => {
                return Err(StoreError::Unavailable(format!(
                    "the reservation of order {:?} took too long and was rolled back",
                    request.order_id
                )));
            }
            other => {
                return Err(corrupt(format!(
                    "order {:?} is held by another attempt ({other})",
                    request.order_id
                )));
            }
        })
    }
}
