//! Feed updates: snapshots and deltas of levels sent in chunks, one script call per chunk of
//! skus in one slot, and a shipment of a committed order, one at a time, in order with the
//! other updates of its sku.

use std::collections::BTreeMap;

use futures_util::future::{join, try_join_all};
use redis::Value;

use super::RedisStore;
use super::connection::Conn;
use super::level::unreadable_level_update;
use super::record::{corrupt, int, items, text};
use crate::clock::Millis;
use crate::store::{ReorderPoint, StockUpdate, StoreError, UpdateKind, UpdateResult};

/// Updates sent to Redis in one script call. It bounds how long one call holds Redis (and so
/// what a feed adds to the latency of reserves): at 1,024 the reserve p99 under a 5,000
/// updates/s feed was about 11 ms, at 256 about 8 ms, with the feed alone still above 150,000
/// updates/s.
const FEED_CHUNK: usize = 256;

/// How long a shipment waits for a reroute of its order under way.
const REROUTE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl RedisStore {
    /// Applies a batch of feed updates; see [`StockStore::apply_updates`](crate::store::StockStore::apply_updates).
    pub(super) async fn apply_updates_on(
        &self,
        conn: &Conn,
        updates: &[StockUpdate],
        now: Millis,
    ) -> Result<Vec<UpdateResult>, StoreError> {
        let mut results: Vec<Option<UpdateResult>> = vec![None; updates.len()];
        // A sku with a shipment in the batch goes one update at a time, in order, so that its
        // sequences apply as sent; every other sku goes in batches by slot.
        let shipped: std::collections::HashSet<&str> = updates
            .iter()
            .filter(|u| matches!(u.kind, UpdateKind::Shipment { .. }))
            .map(|u| u.sku.as_str())
            .collect();
        let mut batches: BTreeMap<u16, Vec<(usize, &StockUpdate)>> = BTreeMap::new();
        let mut one_by_one: BTreeMap<&str, Vec<(usize, &StockUpdate)>> = BTreeMap::new();
        for (i, u) in updates.iter().enumerate() {
            if let Some(why) = crate::store::update_out_of_bounds(&u.kind) {
                results[i] = Some(UpdateResult::Rejected(why));
            } else if shipped.contains(u.sku.as_str()) {
                one_by_one.entry(&u.sku).or_default().push((i, u));
            } else {
                let group = self.group(&self.inner.keys.levels(&u.sku));
                batches.entry(group).or_default().push((i, u));
            }
        }
        let batch_calls = batches
            .values()
            .flat_map(|batch| batch.chunks(FEED_CHUNK))
            .map(|chunk| async move {
                let mut part = vec![None; updates.len()];
                self.apply_levels(conn, chunk, &mut part).await?;
                Ok::<_, StoreError>(part)
            });
        let sku_calls = one_by_one.values().map(|list| async move {
            let mut part = vec![None; updates.len()];
            for (i, u) in list {
                part[*i] = Some(match &u.kind {
                    UpdateKind::Shipment { order_id, quantity } => {
                        self.apply_shipment(conn, u, order_id, *quantity, now)
                            .await?
                    }
                    _ => {
                        let mut one = vec![None; updates.len()];
                        self.apply_levels(conn, &[(*i, *u)], &mut one).await?;
                        one[*i]
                            .take()
                            .ok_or_else(|| corrupt("a feed script without an answer"))?
                    }
                });
            }
            Ok::<_, StoreError>(part)
        });
        let (batched, singles) = join(try_join_all(batch_calls), try_join_all(sku_calls)).await;
        for part in batched?.into_iter().chain(singles?) {
            for (slot, result) in results.iter_mut().zip(part) {
                if result.is_some() {
                    *slot = result;
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| corrupt("an update without a result")))
            .collect()
    }

    /// The expected receipts of these skus; see
    /// [`StockStore::read_inbound`](crate::store::StockStore::read_inbound).
    pub(super) async fn read_inbound_on(
        &self,
        conn: &Conn,
        skus: &[String],
    ) -> Result<crate::store::InboundView, StoreError> {
        let read = try_join_all(skus.iter().map(|sku| async move {
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(self.inner.keys.inbound(sku));
            let fields: Vec<(String, String)> = self.query(conn, &cmd).await?;
            let mut list = Vec::with_capacity(fields.len());
            for (field, value) in fields {
                let bad = || {
                    corrupt(format!(
                        "an expected receipt of {sku}: {field:?} = {value:?}"
                    ))
                };
                let (node_id, reference) = field.split_once('\n').ok_or_else(bad)?;
                let (day, units) = value.split_once(',').ok_or_else(bad)?;
                list.push(crate::store::Inbound {
                    node_id: node_id.to_owned(),
                    reference: reference.to_owned(),
                    expected: day.parse().map_err(|_| bad())?,
                    units: units.parse().map_err(|_| bad())?,
                });
            }
            list.sort_by(|a, b| {
                (a.expected, &a.node_id, &a.reference).cmp(&(b.expected, &b.node_id, &b.reference))
            });
            Ok::<_, StoreError>((sku.clone(), list))
        }))
        .await?;
        Ok(read.into_iter().filter(|(_, l)| !l.is_empty()).collect())
    }

    /// One feed chunk of snapshots and deltas of skus in one group, in order.
    async fn apply_levels(
        &self,
        conn: &Conn,
        updates: &[(usize, &StockUpdate)],
        results: &mut [Option<UpdateResult>],
    ) -> Result<(), StoreError> {
        let mut skus: Vec<&str> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        let mut args = Vec::with_capacity(updates.len() * 7);
        for (_, u) in updates {
            let index = match skus.iter().position(|s| *s == u.sku) {
                Some(i) => i,
                None => {
                    skus.push(&u.sku);
                    keys.extend([
                        self.inner.keys.levels(&u.sku),
                        self.inner.keys.holds(&u.sku),
                        self.inner.keys.inbound(&u.sku),
                    ]);
                    skus.len() - 1
                }
            };
            let (kind, value, safety, reorder) = match &u.kind {
                UpdateKind::Snapshot {
                    on_hand,
                    safety_stock,
                    reorder_point,
                } => (
                    "s",
                    on_hand.to_string(),
                    safety_stock.map(|s| s.to_string()).unwrap_or_default(),
                    match reorder_point {
                        ReorderPoint::Keep => String::new(),
                        ReorderPoint::Set(n) => n.to_string(),
                        ReorderPoint::Clear => "-".to_owned(),
                    },
                ),
                UpdateKind::Delta { change } => {
                    ("d", change.to_string(), String::new(), String::new())
                }
                UpdateKind::Inbound {
                    units,
                    expected,
                    reference,
                } => (
                    "i",
                    units.to_string(),
                    expected.to_string(),
                    reference.clone(),
                ),
                UpdateKind::Shipment { .. } => {
                    return Err(corrupt("a shipment in a batch of snapshots and deltas"));
                }
            };
            args.extend([
                (index + 1).to_string(),
                u.node_id.clone(),
                u.sequence.to_string(),
                kind.to_owned(),
                value,
                safety,
                reorder,
            ]);
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let reply = self
            .eval(conn, &self.inner.scripts.feed, &refs, &args)
            .await?;
        let codes = items(reply);
        if codes.len() != updates.len() {
            return Err(corrupt("a feed script reply of the wrong length"));
        }
        for ((i, u), code) in updates.iter().zip(codes) {
            results[*i] = Some(feed_result(u, code)?);
        }
        Ok(())
    }

    /// A shipment; one of an order being rerouted waits for the reroute, up to
    /// [`REROUTE_WAIT`], then fails the call as in flight (the feed sends it again).
    async fn apply_shipment(
        &self,
        conn: &Conn,
        u: &StockUpdate,
        order_id: &str,
        quantity: u64,
        now: Millis,
    ) -> Result<UpdateResult, StoreError> {
        let give_up = std::time::Instant::now() + REROUTE_WAIT;
        let mut pause = std::time::Duration::from_millis(2);
        loop {
            match self.ship_once(conn, u, order_id, quantity, now).await {
                Err(StoreError::InFlight(_)) if std::time::Instant::now() + pause < give_up => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }

    async fn ship_once(
        &self,
        conn: &Conn,
        u: &StockUpdate,
        order_id: &str,
        quantity: u64,
        now: Millis,
    ) -> Result<UpdateResult, StoreError> {
        let record = self.current_record(conn, order_id, now).await?;
        if record.as_ref().is_some_and(|r| r.rerouting.is_some()) {
            return Err(StoreError::InFlight(order_id.to_owned()));
        }
        let verdict = match &record {
            None => format!("order_id: no reservation for order {order_id:?}"),
            Some(r) if r.state == "committed" => "1".to_owned(),
            Some(r) => {
                let state = if r.unfinished() {
                    "still being reserved"
                } else {
                    r.state.as_str()
                };
                format!("order_id: order {order_id:?} is {state}; only a committed order ships")
            }
        };
        let keys = &self.inner.keys;
        let (lv, ho) = (keys.levels(&u.sku), keys.holds(&u.sku));
        let reply = self
            .eval(
                conn,
                &self.inner.scripts.ship,
                &[&lv, &ho],
                &[
                    u.node_id.clone(),
                    u.sequence.to_string(),
                    order_id.to_owned(),
                    quantity.to_string(),
                    verdict,
                ],
            )
            .await?;
        let values = items(reply);
        let code = values.first().and_then(text).unwrap_or_default();
        match code.as_str() {
            "busy" => Err(StoreError::InFlight(order_id.to_owned())),
            "stale" => Ok(UpdateResult::Stale),
            "bad" => Ok(UpdateResult::Rejected(
                values.get(1).and_then(text).unwrap_or_default(),
            )),
            "corrupt" => Ok(UpdateResult::Rejected(unreadable_level_update(
                u,
                &values.get(1).and_then(text).unwrap_or_default(),
            ))),
            "short" => {
                let outstanding = values.get(1).and_then(int).unwrap_or(0);
                Ok(UpdateResult::Rejected(format!(
                    "quantity: order {order_id:?} has {outstanding} units of {} outstanding at {}, fewer than {quantity}",
                    u.sku, u.node_id
                )))
            }
            "ok" => {
                let record = record.ok_or_else(|| {
                    corrupt(format!(
                        "order {order_id:?} shipped without a reservation record"
                    ))
                })?;
                let mut args = vec![
                    record.token.clone(),
                    self.retention_ms().to_string(),
                    u.sku.clone(),
                    u.node_id.clone(),
                ];
                for pair in values.get(1..).unwrap_or_default().chunks(2) {
                    args.push(pair.first().and_then(text).unwrap_or_default());
                    args.push(pair.get(1).and_then(text).unwrap_or_default());
                }
                let key = keys.record(order_id);
                self.eval(conn, &self.inner.scripts.record_ship, &[&key], &args)
                    .await?;
                Ok(UpdateResult::Applied)
            }
            other => Err(corrupt(format!("a shipment script code {other:?}"))),
        }
    }
}

/// What the feed script said of one update.
fn feed_result(u: &StockUpdate, code: Value) -> Result<UpdateResult, StoreError> {
    if let Some(code) = int(&code) {
        return match code {
            1 => Ok(UpdateResult::Applied),
            0 => Ok(UpdateResult::Stale),
            other => Err(corrupt(format!("a feed script code {other}"))),
        };
    }
    let values = items(code);
    let word = values.first().and_then(text).unwrap_or_default();
    let on_hand = || {
        values
            .get(1)
            .and_then(int)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| corrupt("a feed script refusal without on hand"))
    };
    let change = match u.kind {
        UpdateKind::Delta { change } => Some(change),
        _ => None,
    };
    Ok(UpdateResult::Rejected(match (word.as_str(), change) {
        ("below", Some(change)) => crate::store::delta_below_zero(u, change, on_hand()?),
        ("above", Some(change)) => crate::store::delta_above_limit(u, change, on_hand()?),
        ("corrupt", _) => {
            unreadable_level_update(u, &values.get(1).and_then(text).unwrap_or_default())
        }
        ("bad", _) => crate::store::update_out_of_bounds(&u.kind)
            .unwrap_or_else(|| "quantity: a figure out of bounds".to_owned()),
        (other, _) => return Err(corrupt(format!("a feed script code {other:?}"))),
    }))
}
