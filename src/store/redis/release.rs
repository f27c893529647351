//! Commit and release of a reservation, and confirming an attempt's holds. A release first
//! notes in the record which lines it gives back, so that a retry or any replica's sweep
//! finishes one cut off half-way; every step is idempotent.

use futures_util::future::{join, try_join_all};
use tracing::debug;

use super::RedisStore;
use super::capacity::capacity_kept;
use super::connection::Conn;
use super::keys::member;
use super::record::{Record, coded_record, corrupt, distinct_skus};
use crate::clock::Millis;
use crate::store::{Reservation, ReservationState, StoreError};

impl RedisStore {
    /// A commit; see [`StockStore::commit`](crate::store::StockStore::commit).
    pub(super) async fn commit_on(
        &self,
        conn: &Conn,
        order_id: &str,
        now: Millis,
    ) -> Result<Reservation, StoreError> {
        let key = self.inner.keys.record(order_id);
        let reply = self
            .eval(
                conn,
                &self.inner.scripts.record_commit,
                &[&key],
                &[now.to_string(), self.retention_ms().to_string()],
            )
            .await?;
        let (code, record) = coded_record(reply)?;
        let Some(record) = record else {
            return Err(StoreError::NotFound(order_id.to_owned()));
        };
        if code == "busy" {
            // a reroute under way: waited for like a reserve in flight
            return Err(StoreError::InFlight(order_id.to_owned()));
        }
        match code.as_str() {
            // "ok" on a committed record: a commit again, maybe after one cut off before this
            "committed" | "ok" if record.state == "committed" => {
                // On a cluster the units are confirmed, in case the replica that reserved them
                // died (or was cut off) before it did; only then may the expiry set forget the
                // order, since its entry is what brings a sweep to confirm them otherwise. A
                // failure to forget it only leaves the sweep a little more to look at.
                if self.inner.settings.cluster {
                    self.confirm(conn, order_id, &record.token, &record.skus())
                        .await?;
                }
                if let Err(e) = self.zrem(conn, &member(&record.token, order_id)).await {
                    debug!(order_id, error = %e, "expiry entry left for the sweep");
                }
                return record.reservation();
            }
            "expired" => {
                self.settle_attempt(conn, order_id, &record.token, now)
                    .await?;
                return Err(StoreError::InvalidState {
                    order_id: order_id.to_owned(),
                    state: ReservationState::Expired,
                    action: "committed",
                });
            }
            _ => {}
        }
        if record.unfinished() {
            return Err(StoreError::InFlight(order_id.to_owned()));
        }
        let reservation = record.reservation()?;
        match reservation.state {
            ReservationState::Held | ReservationState::Committed | ReservationState::Fulfilled => {
                Ok(reservation)
            }
            state @ (ReservationState::Released | ReservationState::Expired) => {
                Err(StoreError::InvalidState {
                    order_id: order_id.to_owned(),
                    state,
                    action: "committed",
                })
            }
        }
    }

    /// A release; see [`StockStore::release`](crate::store::StockStore::release).
    pub(super) async fn release_on(
        &self,
        conn: &Conn,
        order_id: &str,
        line_ids: &[String],
        now: Millis,
    ) -> Result<Reservation, StoreError> {
        let Some(record) = self.current_record(conn, order_id, now).await? else {
            return Err(StoreError::NotFound(order_id.to_owned()));
        };
        if record.unfinished() {
            return Err(StoreError::InFlight(order_id.to_owned()));
        }
        let known = record.reservation()?;
        if let Some(unknown) = line_ids.iter().find(|id| !known.has_line(id)) {
            return Err(StoreError::UnknownLine {
                order_id: order_id.to_owned(),
                line_id: unknown.clone(),
            });
        }
        if !matches!(record.state.as_str(), "held" | "committed") {
            return record.reservation();
        }
        // a release cut off earlier goes first, so that its lines are not forgotten
        let record = match &record.releasing {
            Some((lines, _)) => {
                self.complete_release(conn, order_id, &record, lines)
                    .await?
            }
            None => record,
        };
        if !matches!(record.state.as_str(), "held" | "committed") {
            return record.reservation();
        }
        // The record first says which lines are being given back, and the order is filed in the
        // expiry set by a deadline: if this call stops half-way, any replica's sweep finishes
        // the release from the record then.
        let member = member(&record.token, order_id);
        let deadline = now + self.inner.settings.pending_timeout_ms as i64;
        self.zadd(conn, deadline, &member).await?;
        let lines = serde_json::to_string(line_ids).map_err(|e| corrupt(e.to_string()))?;
        let key = self.inner.keys.record(order_id);
        let reply = self
            .eval(
                conn,
                &self.inner.scripts.record_release_begin,
                &[&key],
                &[record.token.clone(), lines, deadline.to_string()],
            )
            .await?;
        let (code, record) = coded_record(reply)?;
        let record = record.ok_or_else(|| StoreError::NotFound(order_id.to_owned()))?;
        if code == "busy" {
            // a reroute under way: waited for like a reserve in flight
            return Err(StoreError::InFlight(order_id.to_owned()));
        }
        if code != "ok" {
            return record.reservation();
        }
        // Releases begun at the same time add their lines to the record's: this call finishes
        // what the record notes now (its own lines among them), so that a release cut off after
        // giving back its stock is finished by any other, and nothing is given back twice.
        let noted = match &record.releasing {
            Some((lines, _)) => lines.clone(),
            None => line_ids.to_vec(),
        };
        self.complete_release(conn, order_id, &record, &noted)
            .await?
            .reservation()
    }

    /// Gives back the outstanding units of the named lines (all if none are named) of a held
    /// or committed order, then marks them released in its record. Every step is idempotent,
    /// so a release cut off half-way is finished by running this again.
    pub(super) async fn complete_release(
        &self,
        conn: &Conn,
        order_id: &str,
        record: &Record,
        line_ids: &[String],
    ) -> Result<Record, StoreError> {
        let keys = &self.inner.keys;
        let skus = distinct_skus(
            record
                .allocations
                .iter()
                .filter(|a| line_ids.is_empty() || line_ids.contains(&a.line_id))
                .filter(|a| a.outstanding() > 0),
        );
        let mut args = vec![order_id.to_owned(), record.token.clone(), "0".to_owned()];
        args.extend(line_ids.iter().cloned());
        let unholds = skus.iter().map(|sku| {
            let (lv, ho, v) = (
                keys.levels(sku),
                keys.holds(sku),
                keys.sku_void(sku, &record.token),
            );
            let args = &args;
            async move {
                self.eval(conn, &self.inner.scripts.unhold, &[&lv, &ho, &v], args)
                    .await
            }
        });
        // The capacity given back is that of the lines named, worked out from the record, not
        // from what this call's unholds happened to return: a unhold that ran for an earlier
        // call cut off after it (or for a sweep) returns nothing now, yet its capacity must
        // still come back. The script gives each line back once, so calls that finish the same
        // release, or release other lines at the same time, never give or keep too much.
        let day = record.body.capacity_day;
        let (used, orders, v) = (
            keys.capacity_used(day),
            keys.capacity_orders(day),
            keys.capacity_void(day, &record.token),
        );
        let whole = record
            .allocations
            .iter()
            .all(|a| line_ids.is_empty() || line_ids.contains(&a.line_id));
        let mut give = vec![
            order_id.to_owned(),
            record.token.clone(),
            "0".to_owned(),
            if whole { "1" } else { "0" }.to_owned(),
        ];
        for ((line, node), kept) in capacity_kept(&record.allocations, line_ids) {
            give.extend([line, node, kept.to_string()]);
        }
        let capacity_keys = [used.as_str(), orders.as_str(), v.as_str()];
        let capacity = self.eval(
            conn,
            &self.inner.scripts.capacity_give,
            &capacity_keys,
            &give,
        );
        let (unholds, capacity) = join(try_join_all(unholds), capacity).await;
        unholds?;
        capacity?;
        let mut args = vec![record.token.clone(), self.retention_ms().to_string()];
        args.extend(line_ids.iter().cloned());
        let key = keys.record(order_id);
        let reply = self
            .eval(conn, &self.inner.scripts.record_release, &[&key], &args)
            .await?;
        let (_, record) = coded_record(reply)?;
        let record = record.ok_or_else(|| StoreError::NotFound(order_id.to_owned()))?;
        let member = member(&record.token, order_id);
        let filed = if record.state == "held" {
            self.zadd(conn, record.expires_at, &member).await
        } else {
            self.zrem(conn, &member).await
        };
        if let Err(e) = filed {
            debug!(order_id, error = %e, "expiry entry left for the sweep");
        }
        Ok(record)
    }

    /// Confirms an attempt's holds of these skus: their units stop being pending (idempotent).
    pub(super) async fn confirm(
        &self,
        conn: &Conn,
        order_id: &str,
        token: &str,
        skus: &[String],
    ) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let args = [order_id.to_owned(), token.to_owned()];
        let calls = skus.iter().map(|sku| {
            let (lv, ho) = (keys.levels(sku), keys.holds(sku));
            let args = &args;
            async move {
                self.eval(conn, &self.inner.scripts.confirm, &[&lv, &ho], args)
                    .await
            }
        });
        try_join_all(calls).await.map(drop)
    }
}
