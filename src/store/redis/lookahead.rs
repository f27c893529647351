//! Look-ahead's data, shared by every replica, in one slot (`{la}`): demand counted per
//! minute (`P:{la}:d:MINUTE`, a hash of `SKU\tROW:COL\tSEGMENT` → units and `\torders` → orders, which
//! expires once past the window), when counting began (`P:{la}:first`), and the newest price
//! table (`P:{la}:prices`, JSON with its version, and `P:{la}:pv`, the version alone, so a
//! replica that has the newest reads one small key).

use std::collections::HashMap;

use super::RedisStore;
use crate::clock::Millis;
use crate::lookahead::{Demand, DemandKey, Observed, Prices, Region};
use crate::store::StoreError;

const MINUTE: Millis = 60_000;
const ORDERS_FIELD: &str = "\torders";

/// KEYS: the minute's hash, the first-count key. ARGV: now, the hash's time to live in ms,
/// orders, then field and units pairs.
const RECORD: &str = "for i = 4, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end \
    redis.call('HINCRBY', KEYS[1], '\\torders', ARGV[3]) \
    redis.call('PEXPIRE', KEYS[1], ARGV[2]) \
    redis.call('SET', KEYS[2], ARGV[1], 'NX') \
    return 1";

/// KEYS: the version, the table. ARGV: the table's JSON with `\"version\":0`, replaced here.
const PUBLISH: &str = "local v = redis.call('INCR', KEYS[1]) \
    local t = string.gsub(ARGV[1], '\"version\":0', '\"version\":' .. v, 1) \
    redis.call('SET', KEYS[2], t) \
    return v";

impl RedisStore {
    fn lookahead_key(&self, name: &str) -> String {
        format!("{}:{{la}}:{name}", self.inner.keys.prefix)
    }

    pub(super) async fn record_demand_on(
        &self,
        seen: &Observed,
        now: Millis,
        window_ms: Millis,
    ) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        let minute = now.div_euclid(MINUTE);
        let mut record = redis::cmd("EVAL");
        record
            .arg(RECORD)
            .arg(2)
            .arg(self.lookahead_key(&format!("d:{minute}")))
            .arg(self.lookahead_key("first"))
            .arg(now)
            .arg(window_ms + 2 * MINUTE)
            .arg(seen.orders);
        for (k, units) in &seen.units {
            record
                .arg(format!("{}\t{}\t{}", k.sku, k.region.key(), k.segment))
                .arg(*units);
        }
        self.query::<i64>(&conn, &record).await.map(|_| ())
    }

    pub(super) async fn read_demand_on(
        &self,
        now: Millis,
        window_ms: Millis,
    ) -> Result<Demand, StoreError> {
        let conn = self.conn().await?;
        let (from, to) = ((now - window_ms).div_euclid(MINUTE), now.div_euclid(MINUTE));
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(self.lookahead_key("first"));
        for minute in from..=to {
            pipe.cmd("HGETALL")
                .arg(self.lookahead_key(&format!("d:{minute}")));
        }
        let mut conn2 = conn.clone();
        let (first, minutes): (Option<Millis>, Vec<HashMap<String, u64>>) = {
            let replies: Vec<redis::Value> =
                self.timed("command", pipe.query_async(&mut conn2)).await?;
            let mut replies = replies.into_iter();
            let first = replies
                .next()
                .map(redis::from_redis_value::<Option<Millis>>)
                .transpose()
                .map_err(|e| StoreError::Corrupt(format!("look-ahead's first count: {e}")))?
                .flatten();
            let minutes = replies
                .map(redis::from_redis_value::<HashMap<String, u64>>)
                .collect::<Result<_, _>>()
                .map_err(|e| StoreError::Corrupt(format!("look-ahead's demand counts: {e}")))?;
            (first, minutes)
        };
        let mut demand = Demand::default();
        for counts in minutes {
            for (field, units) in counts {
                if field == ORDERS_FIELD {
                    demand.orders += units;
                    continue;
                }
                let mut parts = field.splitn(3, '\t');
                let parsed = match (parts.next(), parts.next(), parts.next()) {
                    (Some(sku), Some(region), Some(segment)) => {
                        Region::parse(region).map(|region| (sku, region, segment))
                    }
                    _ => None,
                };
                let Some((sku, region, segment)) = parsed else {
                    return Err(StoreError::Corrupt(format!(
                        "look-ahead's demand counts name {field:?}, not a sku, a region and a segment"
                    )));
                };
                *demand
                    .units
                    .entry(DemandKey {
                        sku: sku.to_owned(),
                        region,
                        segment: segment.to_owned(),
                    })
                    .or_default() += units;
            }
        }
        demand.covered_ms = match first {
            Some(first) => (now - first).clamp(MINUTE, window_ms.max(MINUTE)),
            None => window_ms,
        };
        Ok(demand)
    }

    pub(super) async fn save_prices_on(&self, prices: &Prices) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        let table = serde_json::to_string(&Prices {
            version: 0,
            ..prices.clone()
        })
        .map_err(|e| StoreError::Corrupt(format!("a price table: {e}")))?;
        let mut publish = redis::cmd("EVAL");
        publish
            .arg(PUBLISH)
            .arg(2)
            .arg(self.lookahead_key("pv"))
            .arg(self.lookahead_key("prices"))
            .arg(table);
        self.query::<u64>(&conn, &publish).await
    }

    pub(super) async fn read_prices_on(&self, known: u64) -> Result<Option<Prices>, StoreError> {
        let conn = self.conn().await?;
        let mut version = redis::cmd("GET");
        version.arg(self.lookahead_key("pv"));
        let newest: Option<u64> = self.query(&conn, &version).await?;
        let newest = newest.unwrap_or(0);
        if newest == known {
            return Ok(None);
        }
        if newest == 0 {
            return Ok(Some(Prices::default()));
        }
        let mut get = redis::cmd("GET");
        get.arg(self.lookahead_key("prices"));
        let table: Option<String> = self.query(&conn, &get).await?;
        let Some(table) = table else {
            return Ok(Some(Prices::default()));
        };
        serde_json::from_str(&table)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("the price table: {e}")))
    }
}
