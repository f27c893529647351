//! A reserve: one try, and once more after a sweep when the try was refused for units or
//! capacity a sweep may have yet to give back. On a single Redis one script does it all,
//! atomically; on a cluster it is made in steps (see `cluster.rs`).

use std::collections::BTreeMap;

use super::RedisStore;
use super::capacity::{MILLIS_PER_DAY, capacity_entries};
use super::connection::Conn;
use super::keys::{attempt_token, member};
use super::level::unreadable_level;
use super::record::{Body, Record, coded_record, corrupt, int, items, text};
use crate::clock::Millis;
use crate::store::{Allocation, HoldRequest, ReserveOutcome, StoreError};

impl RedisStore {
    /// A reserve; see [`StockStore::reserve`](crate::store::StockStore::reserve).
    pub(super) async fn reserve_on(
        &self,
        conn: &Conn,
        request: HoldRequest,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        if let Some((sku, node_id, wanted)) = crate::store::oversized_hold(&request.allocations) {
            return self
                .oversized(conn, request, sku, node_id, wanted, now)
                .await;
        }
        let outcome = self.reserve_once(conn, request.clone(), now).await?;
        if !matches!(
            outcome,
            ReserveOutcome::Insufficient { .. } | ReserveOutcome::OverCapacity { .. }
        ) {
            return Ok(outcome);
        }
        // Reads leave out the units of holds past their expiry without giving them back, so
        // the plan may count on units a sweep has yet to return: return what is due, then try
        // once more.
        if !self.sweep_for_reserve(conn, now).await {
            return Ok(outcome);
        }
        self.reserve_once(conn, request, now).await
    }

    /// One try at a reserve: on a single Redis one script, on a cluster in steps (see the
    /// module docs).
    async fn reserve_once(
        &self,
        conn: &Conn,
        request: HoldRequest,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        let token = attempt_token();
        let member = member(&token, &request.order_id);
        let deadline = now + self.inner.settings.pending_timeout_ms as i64;
        let body = serde_json::to_string(&Body {
            order_id: request.order_id.clone(),
            fingerprint: request.fingerprint.clone(),
            segment: request.segment.clone(),
            plan: request.plan.clone(),
            created_at: now,
            capacity_day: request.capacity_day,
            order: request.order.clone(),
            waiting: request.waiting.clone(),
        })
        .map_err(|e| corrupt(format!("a reservation body: {e}")))?;
        let allocations = serde_json::to_string(&request.allocations)
            .map_err(|e| corrupt(format!("reservation allocations: {e}")))?;
        let create_args = [
            token.clone(),
            request.expires_at.to_string(),
            deadline.to_string(),
            request.capacity_day.to_string(),
            body,
            allocations,
            request.segment.clone(),
        ];
        if !self.inner.settings.cluster {
            return self
                .reserve_whole(conn, request, &token, &member, &create_args, now)
                .await;
        }
        self.reserve_in_steps(conn, request, token, deadline, create_args, now)
            .await
    }

    /// What a reserve makes of a record the order has already: the reservation, or `None`
    /// once an attempt abandoned by a replica that died is rolled back (then try again, once).
    pub(super) async fn existing_outcome(
        &self,
        conn: &Conn,
        request: &HoldRequest,
        existing: Record,
        taken_over: bool,
        now: Millis,
    ) -> Result<Option<ReserveOutcome>, StoreError> {
        if existing.unfinished() {
            if !taken_over && existing.deadline.min(existing.expires_at) <= now {
                self.settle_attempt(conn, &request.order_id, &existing.token, now)
                    .await?;
                return Ok(None);
            }
            return Err(StoreError::InFlight(request.order_id.clone()));
        }
        let record = self
            .current_record(conn, &request.order_id, now)
            .await?
            .ok_or_else(|| corrupt("a reservation record that went away"))?;
        Ok(Some(ReserveOutcome::Existing(record.reservation()?)))
    }

    /// The reservation a reserve made: held, or expired already if its TTL was shorter than
    /// the clock's step (then its stock is back at once).
    pub(super) async fn created(
        &self,
        conn: &Conn,
        request: HoldRequest,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        if request.expires_at <= now {
            let record = self
                .current_record(conn, &request.order_id, now)
                .await?
                .ok_or_else(|| corrupt("a reservation record that went away"))?;
            return Ok(ReserveOutcome::Created(record.reservation()?));
        }
        Ok(ReserveOutcome::Created(request.into_held(now)))
    }

    /// A reserve on a single Redis: one script does it all, atomically.
    async fn reserve_whole(
        &self,
        conn: &Conn,
        request: HoldRequest,
        token: &str,
        member: &str,
        create_args: &[String; 7],
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        let keys = &self.inner.keys;
        let day = request.capacity_day;
        let mut by_sku: BTreeMap<&str, Vec<&Allocation>> = BTreeMap::new();
        for a in &request.allocations {
            by_sku.entry(&a.sku).or_default().push(a);
        }
        let per_line = capacity_entries(&request.allocations);
        let mut key_list = vec![
            keys.record(&request.order_id),
            keys.expiry(),
            keys.capacity_used(day),
            keys.capacity_orders(day),
        ];
        let [_, expires_at, _, day_arg, body, allocations, segment] = create_args;
        let mut args = vec![
            request.order_id.clone(),
            token.to_owned(),
            expires_at.clone(),
            day_arg.clone(),
            body.clone(),
            allocations.clone(),
            request.access_arg(),
            ((day + 2) * MILLIS_PER_DAY - now)
                .max(request.expires_at - now)
                .max(1)
                .to_string(),
            member.to_owned(),
            segment.clone(),
            per_line.len().to_string(),
        ];
        for ((node, line), units) in &per_line {
            args.extend([node.to_string(), units.to_string(), line.to_string()]);
        }
        args.push(request.capacity_limits.len().to_string());
        for (node, limit) in &request.capacity_limits {
            args.extend([node.clone(), limit.to_string()]);
        }
        let skus: Vec<&str> = by_sku.keys().copied().collect();
        for (sku, allocations) in &by_sku {
            key_list.extend([keys.levels(sku), keys.holds(sku)]);
            args.push(allocations.len().to_string());
            for a in allocations {
                args.extend([a.line_id.clone(), a.node_id.clone(), a.quantity.to_string()]);
            }
        }
        let refs: Vec<&str> = key_list.iter().map(String::as_str).collect();
        let mut taken_over = false;
        loop {
            let reply = self
                .eval(conn, &self.inner.scripts.reserve_whole, &refs, &args)
                .await?;
            let (code, existing) = coded_record(reply.clone())?;
            let values = items(reply);
            let number = |i: usize| values.get(i).and_then(int).unwrap_or(0).max(0) as u64;
            return match code.as_str() {
                "created" => self.created(conn, request, now).await,
                "short" => Ok(ReserveOutcome::Insufficient {
                    sku: skus
                        .get((number(1) as usize).saturating_sub(1))
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    node_id: values.get(2).and_then(text).unwrap_or_default(),
                    wanted: number(3),
                    available: number(4),
                }),
                "over" => Ok(ReserveOutcome::OverCapacity {
                    node_id: values.get(1).and_then(text).unwrap_or_default(),
                    wanted: number(2),
                    available: number(3),
                }),
                "corrupt" => Err(unreadable_level(
                    skus.get((number(1) as usize).saturating_sub(1))
                        .copied()
                        .unwrap_or_default(),
                    &values.get(2).and_then(text).unwrap_or_default(),
                    &values.get(3).and_then(text).unwrap_or_default(),
                )),
                "exists" => {
                    let existing =
                        existing.ok_or_else(|| corrupt("an existing record without fields"))?;
                    match self
                        .existing_outcome(conn, &request, existing, taken_over, now)
                        .await?
                    {
                        Some(outcome) => Ok(outcome),
                        None => {
                            taken_over = true;
                            continue;
                        }
                    }
                }
                other => Err(corrupt(format!("a reserve script code {other:?}"))),
            };
        }
    }

    /// A hold of more units of a sku at a node than any level can have: insufficient, unless
    /// the order is known already.
    async fn oversized(
        &self,
        conn: &Conn,
        request: HoldRequest,
        sku: String,
        node_id: String,
        wanted: u64,
        now: Millis,
    ) -> Result<ReserveOutcome, StoreError> {
        if let Some(record) = self.current_record(conn, &request.order_id, now).await?
            && !record.unfinished()
        {
            return Ok(ReserveOutcome::Existing(record.reservation()?));
        }
        let (stock, _) = self
            .read_at(conn, std::slice::from_ref(&sku), None, now)
            .await?;
        let available = stock
            .get(&sku)
            .and_then(|m| m.get(&node_id))
            .map(|l| request.ats(l))
            .unwrap_or(0);
        Ok(ReserveOutcome::Insufficient {
            sku,
            node_id,
            wanted,
            available,
        })
    }
}
