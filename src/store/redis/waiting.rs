//! The index of lines waiting for supply: per sku, a hash of the lines waiting for it
//! (`P:{b}:w:SKU`, `["ORDER","LINE"]` → the entry as JSON), their units summed by segment
//! (`P:{b}:ws:SKU`, what `GetAvailability` reads), and the set of skus that have one
//! (`P:{b}:skus`), all in one slot. The records are what is true; the index is how a replica
//! finds what to fill without reading every record. A line is noted before its record says it
//! waits, so the index lists every waiting line (and maybe some that no longer wait: the filler
//! drops those once their records show it); a line is dropped only as it was read, so a line
//! noted again meanwhile stays.

use redis::Value;

use super::RedisStore;
use super::record::{corrupt, items, text};
use crate::store::{StoreError, WaitingEntry};

/// Takes an entry's units off its segment's sum.
const UNSUM: &str = "local function unsum(sums, entry) \
    local ok, e = pcall(cjson.decode, entry) \
    if not ok or type(e) ~= 'table' or type(e.units) ~= 'number' then return end \
    local seg = tostring(e.segment or '') \
    if redis.call('HINCRBY', sums, seg, -e.units) <= 0 then redis.call('HDEL', sums, seg) end end ";

/// KEYS: the set of skus, then each sku's hash and sums. ARGV: per entry, the index of its hash
/// in KEYS (its sums follow it), the sku, the member, the entry, its segment and its units.
const NOTE: &str = "for i = 1, #ARGV, 6 do \
    local k = KEYS[tonumber(ARGV[i])] \
    local sums = KEYS[tonumber(ARGV[i]) + 1] \
    local old = redis.call('HGET', k, ARGV[i + 2]) \
    if old then unsum(sums, old) end \
    redis.call('HSET', k, ARGV[i + 2], ARGV[i + 3]) \
    redis.call('HINCRBY', sums, ARGV[i + 4], ARGV[i + 5]) \
    redis.call('SADD', KEYS[1], ARGV[i + 1]) end return 1";

/// As NOTE; each entry is dropped only if stored as given, and a sku with none left leaves the
/// set.
const FORGET: &str = "for i = 1, #ARGV, 6 do \
    local k = KEYS[tonumber(ARGV[i])] \
    if redis.call('HGET', k, ARGV[i + 2]) == ARGV[i + 3] then \
      redis.call('HDEL', k, ARGV[i + 2]) \
      unsum(KEYS[tonumber(ARGV[i]) + 1], ARGV[i + 3]) end \
    if redis.call('HLEN', k) == 0 then \
      redis.call('SREM', KEYS[1], ARGV[i + 1]) \
      redis.call('DEL', KEYS[tonumber(ARGV[i]) + 1]) end end return 1";

/// KEYS: the set of skus (for the slot), the prefix of the sums. ARGV: the skus. Returns per sku
/// its sums as a flat list of segment and units.
const SUMS: &str = "local out = {} \
    for i, sku in ipairs(ARGV) do out[i] = redis.call('HGETALL', KEYS[2] .. sku) end \
    return out";

/// KEYS: the set of skus. ARGV: the skus to read (none: every sku in the set). Returns, per sku
/// with entries, its entries' values.
const READ: &str = "local skus = ARGV \
    if #skus == 0 then skus = redis.call('SMEMBERS', KEYS[1]) end \
    local out = {} \
    for _, sku in ipairs(skus) do \
      local vals = redis.call('HVALS', KEYS[2] .. sku) \
      for _, v in ipairs(vals) do out[#out + 1] = v end end \
    return out";

impl RedisStore {
    fn waiting_skus_key(&self) -> String {
        format!("{}:{{b}}:skus", self.inner.keys.prefix)
    }

    /// The hash of lines waiting for `sku`; the prefix of every such key is this with no sku.
    fn waiting_key(&self, sku: &str) -> String {
        format!("{}:{{b}}:w:{sku}", self.inner.keys.prefix)
    }

    /// The units waiting for `sku` by segment; likewise a prefix with no sku.
    fn waiting_sums_key(&self, sku: &str) -> String {
        format!("{}:{{b}}:ws:{sku}", self.inner.keys.prefix)
    }

    async fn change_waiting(
        &self,
        script: &str,
        entries: &[WaitingEntry],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let conn = self.conn().await?;
        let mut keys = vec![self.waiting_skus_key()];
        let mut args: Vec<String> = Vec::new();
        for e in entries {
            let key = self.waiting_key(&e.sku);
            let at = match keys.iter().position(|k| *k == key) {
                Some(at) => at,
                None => {
                    keys.push(key);
                    keys.push(self.waiting_sums_key(&e.sku));
                    keys.len() - 2
                }
            };
            args.extend([
                (at + 1).to_string(),
                e.sku.clone(),
                member(e)?,
                serde_json::to_string(e).map_err(|e| corrupt(format!("a waiting line: {e}")))?,
                e.segment.clone(),
                e.units.to_string(),
            ]);
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{UNSUM}{script}"))
            .arg(keys.len())
            .arg(&keys)
            .arg(&args);
        self.query::<i64>(&conn, &cmd).await?;
        Ok(())
    }

    pub(super) async fn note_waiting_on(&self, entries: &[WaitingEntry]) -> Result<(), StoreError> {
        self.change_waiting(NOTE, entries).await
    }

    pub(super) async fn forget_waiting_on(
        &self,
        entries: &[WaitingEntry],
    ) -> Result<(), StoreError> {
        self.change_waiting(FORGET, entries).await
    }

    pub(super) async fn waiting_units_on(
        &self,
        skus: &[String],
    ) -> Result<
        std::collections::HashMap<String, std::collections::BTreeMap<String, u64>>,
        StoreError,
    > {
        let mut out = std::collections::HashMap::new();
        if skus.is_empty() {
            return Ok(out);
        }
        let conn = self.conn().await?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SUMS)
            .arg(2)
            .arg(self.waiting_skus_key())
            .arg(self.waiting_sums_key(""))
            .arg(skus);
        let reply: Value = self.query(&conn, &cmd).await?;
        for (sku, sums) in skus.iter().zip(items(reply)) {
            let flat = items(sums);
            let mut by_segment = std::collections::BTreeMap::new();
            for pair in flat.chunks(2) {
                let (Some(segment), Some(units)) = (
                    pair.first().and_then(text),
                    pair.get(1).and_then(super::record::int),
                ) else {
                    continue;
                };
                if units > 0 {
                    by_segment.insert(segment, units as u64);
                }
            }
            if !by_segment.is_empty() {
                out.insert(sku.clone(), by_segment);
            }
        }
        Ok(out)
    }

    pub(super) async fn waiting_for_on(
        &self,
        skus: &[String],
    ) -> Result<Vec<WaitingEntry>, StoreError> {
        let conn = self.conn().await?;
        let mut cmd = redis::cmd("EVAL");
        // every key read is in the `{b}` slot: the prefix of the per-sku hashes is passed as a
        // key so that a cluster routes the script there
        cmd.arg(READ)
            .arg(2)
            .arg(self.waiting_skus_key())
            .arg(self.waiting_key(""))
            .arg(skus);
        let reply: Value = self.query(&conn, &cmd).await?;
        let mut entries = Vec::new();
        for v in items(reply) {
            let Some(t) = text(&v) else { continue };
            let entry: WaitingEntry = serde_json::from_str(&t)
                .map_err(|e| corrupt(format!("a waiting line in the index: {e}")))?;
            entries.push(entry);
        }
        entries.sort_by(|a, b| {
            (a.since, &a.order_id, &a.line_id).cmp(&(b.since, &b.order_id, &b.line_id))
        });
        Ok(entries)
    }
}

/// The index member of a line: the order and line ids as a JSON pair, never ambiguous.
fn member(e: &WaitingEntry) -> Result<String, StoreError> {
    serde_json::to_string(&(&e.order_id, &e.line_id))
        .map_err(|e| corrupt(format!("a waiting line: {e}")))
}
