//! Leases and cursors: one replica at a time does a job (delivering a webhook), and where it
//! got to survives it. A lease is a key that expires (`P:{w:NAME}:lease`, Redis's clock); the
//! cursor beside it in the same slot (`P:{w:NAME}:cursor`) is saved only by the holder, checked
//! in the same script.

use super::RedisStore;
use crate::events::EventId;
use crate::store::StoreError;

const TAKE: &str = "local h = redis.call('GET', KEYS[1]) \
    if h ~= false and h ~= ARGV[1] then return 0 end \
    if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) \
    else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end \
    return 1";

const SAVE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    redis.call('SET', KEYS[2], ARGV[2]) return 1 end return 0";

impl RedisStore {
    fn lease_key(&self, name: &str) -> String {
        format!("{}:{{w:{name}}}:lease", self.inner.keys.prefix)
    }

    fn cursor_key(&self, name: &str) -> String {
        format!("{}:{{w:{name}}}:cursor", self.inner.keys.prefix)
    }

    pub(super) async fn take_lease_on(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let mut take = redis::cmd("EVAL");
        take.arg(TAKE)
            .arg(1)
            .arg(self.lease_key(name))
            .arg(holder)
            .arg(ttl_ms);
        Ok(self.query::<i64>(&conn, &take).await? == 1)
    }

    pub(super) async fn cursor_on(&self, name: &str) -> Result<Option<EventId>, StoreError> {
        let conn = self.conn().await?;
        let mut get = redis::cmd("GET");
        get.arg(self.cursor_key(name));
        match self.query::<Option<String>>(&conn, &get).await? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|e: String| StoreError::Corrupt(format!("the cursor {name:?}: {e}"))),
        }
    }

    pub(super) async fn save_cursor_on(
        &self,
        name: &str,
        holder: &str,
        cursor: EventId,
    ) -> Result<bool, StoreError> {
        let conn = self.conn().await?;
        let mut save = redis::cmd("EVAL");
        save.arg(SAVE)
            .arg(2)
            .arg(self.lease_key(name))
            .arg(self.cursor_key(name))
            .arg(holder)
            .arg(cursor.to_string());
        Ok(self.query::<i64>(&conn, &save).await? == 1)
    }
}
