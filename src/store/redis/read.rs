//! Reads of stock and capacity. Reads never sweep: alongside the levels they read what is due
//! and leave out the units a sweep will give back, writing nothing, and they wait for the
//! records of due orders only a short while. On a single Redis, what is due, the levels and
//! the capacity are one pipeline, so the read the engine plans from is one round trip; on a
//! cluster they sit in different slots and are read apart, at once.

use std::collections::{BTreeMap, HashMap};

use futures_util::future::{join, join_all, join3, try_join_all};
use redis::{Cmd, FromRedisValue, Value};
use tracing::debug;

use super::RedisStore;
use super::capacity::{StoredCapacity, capacity_given};
use super::connection::{Conn, failed};
use super::keys::split_member;
use super::level::parse_levels;
use super::record::{DueRecord, StoredHold, corrupt};
use crate::clock::Millis;
use crate::store::{StockView, StoreError};

/// Due entries of the expiry set a read looks at to leave their units out; beyond that many
/// due at once (a sweep far behind), a read may count some until the sweep catches up.
const DUE_LIMIT: isize = 1024;

/// The share of the operation timeout a read waits for the expiry set and for the records of
/// due orders that hold what it reads; beyond it, their units are counted as still reserved.
const DUE_LOOKUP_SHARE: f64 = 0.25;

/// Units a sweep will give back: per (sku, node) of stock, and per node of a day's capacity.
#[derive(Debug, Default)]
struct DueUnits {
    stock: HashMap<(String, String), u64>,
    capacity: HashMap<String, u64>,
}

/// What a read finds: the due entries of the expiry set (member, score), the levels of its
/// skus, and the capacity used on its day.
type Found = (Vec<(String, String)>, StockView, HashMap<String, u64>);

/// What a read asks for: the levels of these skus and, when a day is given, its capacity in
/// use, as of `now`.
#[derive(Clone, Copy)]
struct Wanted<'a> {
    skus: &'a [String],
    day: Option<i64>,
    now: Millis,
}

/// The capacity in use of a day's `used` hash: nodes with units counted.
fn capacity_in_use(fields: Vec<(String, i64)>) -> HashMap<String, u64> {
    fields
        .into_iter()
        .filter(|(_, used)| *used > 0)
        .map(|(node, used)| (node, used as u64))
        .collect()
}

/// One command's reply out of a pipeline, read as a reply to the command sent alone is.
fn reply<T: FromRedisValue>(value: Value) -> redis::RedisResult<T> {
    Ok(redis::from_redis_value(value.extract_error()?)?)
}

/// What a due attempt holds of the skus a read looks at, and its entry in the day's
/// by-order capacity hash.
type DueHolds = (Vec<(String, StoredHold)>, Option<StoredCapacity>);

impl RedisStore {
    /// Every node's level of these skus: one `HGETALL` per sku (one field per node), sent
    /// together.
    pub(super) async fn read_levels(
        &self,
        conn: &Conn,
        skus: &[String],
    ) -> Result<StockView, StoreError> {
        let reads = skus.iter().map(|sku| {
            let read = self.levels_read(sku);
            async move {
                let fields: Vec<(String, String)> = self.query(conn, &read).await?;
                Ok::<_, StoreError>((sku.clone(), parse_levels(sku, &fields)?))
            }
        });
        Ok(try_join_all(reads).await?.into_iter().collect())
    }

    async fn read_capacity(
        &self,
        conn: &Conn,
        day: i64,
    ) -> Result<HashMap<String, u64>, StoreError> {
        let fields: Vec<(String, i64)> = self.query(conn, &self.capacity_read(day)).await?;
        Ok(capacity_in_use(fields))
    }

    /// The command that reads a sku's levels, one field per node.
    fn levels_read(&self, sku: &str) -> Cmd {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.inner.keys.levels(sku));
        cmd
    }

    /// The command that reads the capacity used on a day, one field per node.
    fn capacity_read(&self, day: i64) -> Cmd {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.inner.keys.capacity_used(day));
        cmd
    }

    /// Stock of these skus and the capacity used on `day` (when given) as of `now`. Alongside
    /// the levels it reads what is due by then; when anything is, it works out what a sweep
    /// will give back of it and leaves that out, writing nothing and waiting for no sweep.
    pub(super) async fn read_at(
        &self,
        conn: &Conn,
        skus: &[String],
        day: Option<i64>,
        now: Millis,
    ) -> Result<(StockView, HashMap<String, u64>), StoreError> {
        let wanted = Wanted { skus, day, now };
        let (due, mut stock, mut used) = match conn {
            Conn::Single(_) => self.read_in_one_trip(conn, wanted).await?,
            Conn::Cluster(_) => self.read_by_slot(conn, wanted).await?,
        };
        if due.is_empty() {
            return Ok((stock, used));
        }
        if due.len() as isize == DUE_LIMIT {
            debug!(due = due.len(), "more holds due than a read looks at");
        }
        let due: Vec<(&str, &str)> = due.iter().filter_map(|(m, _)| split_member(m)).collect();
        let back = self.due_units(conn, &due, wanted).await?;
        for ((sku, node), units) in back.stock {
            if let Some(level) = stock.get_mut(&sku).and_then(|m| m.get_mut(&node)) {
                level.reserved = level.reserved.saturating_sub(units);
            }
        }
        for (node, units) in back.capacity {
            if let Some(u) = used.get_mut(&node) {
                *u = u.saturating_sub(units);
            }
        }
        used.retain(|_, u| *u > 0);
        Ok((stock, used))
    }

    /// What is due, the levels and the capacity on a single Redis: one pipeline, so one round
    /// trip, however many skus. Each command's reply is read as if it had been sent alone: one
    /// that failed fails the read as it would have, except the due lookup, whose failure leaves
    /// every hold counted. The pipeline is bounded by the operation timeout as a whole; with
    /// one server, there is no master of the expiry set to stall alone.
    async fn read_in_one_trip(&self, conn: &Conn, wanted: Wanted<'_>) -> Result<Found, StoreError> {
        let Wanted { skus, day, now } = wanted;
        let mut pipe = redis::pipe();
        // every reply comes back, the failed ones as errors, to be looked at one by one
        pipe.ignore_errors();
        pipe.add_command(self.due_lookup(now, DUE_LIMIT));
        for sku in skus {
            pipe.add_command(self.levels_read(sku));
        }
        if let Some(day) = day {
            pipe.add_command(self.capacity_read(day));
        }
        let sent = 1 + skus.len() + usize::from(day.is_some());
        let mut conn = conn.clone();
        let replies: Vec<Value> = self.timed("command", pipe.query_async(&mut conn)).await?;
        if replies.len() != sent {
            return Err(corrupt(format!(
                "a read of {sent} commands answered with {} replies",
                replies.len()
            )));
        }
        let mut replies = replies.into_iter();
        // as many replies as commands, counted above
        let mut next = || replies.next().unwrap_or(Value::Nil);
        let due = match reply::<Vec<(String, String)>>(next()) {
            Ok(due) => due,
            Err(e) => {
                debug!(error = %e, "what is due not read; holds stay counted");
                Vec::new()
            }
        };
        let mut stock = StockView::with_capacity(skus.len());
        for sku in skus {
            let fields: Vec<(String, String)> = reply(next()).map_err(|e| failed("command", &e))?;
            stock.insert(sku.clone(), parse_levels(sku, &fields)?);
        }
        let used = match day {
            Some(_) => capacity_in_use(reply(next()).map_err(|e| failed("command", &e))?),
            None => HashMap::new(),
        };
        Ok((due, stock, used))
    }

    /// What is due, the levels and the capacity on a cluster, where they sit in different
    /// slots: each read on its own, all at once.
    async fn read_by_slot(&self, conn: &Conn, wanted: Wanted<'_>) -> Result<Found, StoreError> {
        let Wanted { skus, day, now } = wanted;
        let capacity = async {
            match day {
                Some(day) => self.read_capacity(conn, day).await,
                None => Ok(HashMap::new()),
            }
        };
        // What is due is looked up as briefly as the records of due orders (see `due_units`):
        // with the expiry set's master stalled, a read counts every hold as reserved rather
        // than wait for it.
        let due = async {
            let lookup = self.op_timeout().mul_f64(DUE_LOOKUP_SHARE);
            match tokio::time::timeout(lookup, self.due_entries(conn, now, DUE_LIMIT)).await {
                Ok(Ok(due)) => due,
                Ok(Err(e)) => {
                    debug!(error = %e, "what is due not read; holds stay counted");
                    Vec::new()
                }
                Err(_) => {
                    debug!("what is due not read in time; holds stay counted");
                    Vec::new()
                }
            }
        };
        let (due, stock, used) = join3(due, self.read_levels(conn, skus), capacity).await;
        Ok((due, stock?, used?))
    }

    /// What a sweep will give back of these due attempts (token, order), of these skus and of
    /// the day's capacity: the same decisions as [`settle_attempt`](Self::settle_attempt),
    /// made on what is read, with nothing written.
    ///
    /// Only orders that hold these skus or the day's capacity under the due attempt's token are
    /// looked at further (their holds are read from the masters the levels and capacity were
    /// read from). Their records are read within [`DUE_LOOKUP_SHARE`] of the operation timeout:
    /// a record that does not come (its master stalled, or it does not parse) gives nothing
    /// back here, so its units are counted as still reserved. That is safe: a hold rechecks the
    /// stock atomically, and a reserve refused for want of them sweeps and tries again.
    async fn due_units(
        &self,
        conn: &Conn,
        due: &[(&str, &str)],
        wanted: Wanted<'_>,
    ) -> Result<DueUnits, StoreError> {
        let Wanted { skus, day, now } = wanted;
        let keys = &self.inner.keys;
        let mut orders: Vec<&str> = due.iter().map(|(_, o)| *o).collect();
        orders.sort_unstable();
        orders.dedup();
        if orders.is_empty() || (skus.is_empty() && day.is_none()) {
            return Ok(DueUnits::default());
        }
        let tokens: HashMap<&str, Vec<&str>> = due.iter().fold(HashMap::new(), |mut m, (t, o)| {
            m.entry(*o).or_default().push(*t);
            m
        });
        let holds = try_join_all(skus.iter().map(|sku| {
            let orders = &orders;
            async move {
                let values: Vec<Option<String>> = self
                    .query(conn, redis::cmd("HMGET").arg(keys.holds(sku)).arg(orders))
                    .await?;
                Ok::<_, StoreError>((sku, values))
            }
        }));
        let capacity = async {
            match day {
                Some(day) => self
                    .query::<Vec<Option<String>>>(
                        conn,
                        redis::cmd("HMGET")
                            .arg(keys.capacity_orders(day))
                            .arg(&orders),
                    )
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let (holds, capacity) = join(holds, capacity).await;
        let is_due =
            |order: &str, token: &str| tokens.get(order).is_some_and(|t| t.contains(&token));
        // (order, token) → its holds of these skus, and its capacity entry of the day
        let mut held: BTreeMap<(&str, String), DueHolds> = BTreeMap::new();
        for (sku, values) in holds? {
            for (order, value) in orders.iter().zip(values) {
                let Some(hold) = value.and_then(|v| serde_json::from_str::<StoredHold>(&v).ok())
                else {
                    continue;
                };
                if is_due(order, &hold.t) {
                    let at = held.entry((*order, hold.t.clone())).or_default();
                    at.0.push((sku.clone(), hold));
                }
            }
        }
        if let Some(values) = capacity? {
            for (order, value) in orders.iter().zip(values) {
                let Some(entry) =
                    value.and_then(|v| serde_json::from_str::<StoredCapacity>(&v).ok())
                else {
                    continue;
                };
                if is_due(order, &entry.t) {
                    let token = entry.t.clone();
                    held.entry((*order, token)).or_default().1 = Some(entry);
                }
            }
        }
        let mut back = DueUnits::default();
        if held.is_empty() {
            return Ok(back);
        }
        let lookup = self.op_timeout().mul_f64(DUE_LOOKUP_SHARE);
        let records = join_all(held.keys().map(|(order, _)| async move {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(keys.record(order))
                .arg(&["st", "tok", "exp", "dl", "day", "al", "rel", "rdl", "rr"]);
            let read = self.query::<Vec<Value>>(conn, &cmd);
            match tokio::time::timeout(lookup, read).await {
                Ok(Ok(values)) => DueRecord::parse(&values),
                Ok(Err(e)) => {
                    debug!(order, error = %e, "a due record not read; its units stay counted");
                    None
                }
                Err(_) => {
                    debug!(
                        order,
                        "a due record not read in time; its units stay counted"
                    );
                    None
                }
            }
        }))
        .await;
        for (((_, token), (holds, capacity)), record) in held.into_iter().zip(records) {
            let Some(record) = record else { continue };
            let Some(g) = record.gives(&token, now) else {
                continue;
            };
            for (sku, hold) in holds {
                for (line, node, units) in hold.a {
                    if g.covers(&line) {
                        let total = back.stock.entry((sku.clone(), node)).or_default();
                        *total = total.saturating_add(units);
                    }
                }
            }
            if let (Some(entry), Some(day)) = (capacity, day)
                && record.day == Some(day)
            {
                for (node, units) in capacity_given(&entry, &g, &record.allocations) {
                    let total = back.capacity.entry(node).or_default();
                    *total = total.saturating_add(units);
                }
            }
        }
        Ok(back)
    }
}
