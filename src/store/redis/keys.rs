//! Where everything lives in Redis: the key of each part of the layout in the module docs,
//! the cluster slot a key hashes to, and the tokens that name one attempt at a reserve.

/// Markers spread over the slot space; a master that owns at least this share of the slots in
/// one range holds one of them.
const MARKERS: u16 = 16;

/// The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag, or of the whole key.
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        bytes[open + 1..]
            .iter()
            .position(|&b| b == b'}')
            .filter(|&len| len > 0)
            .map(|len| &bytes[open + 1..open + 1 + len])
    });
    crc16(tagged.unwrap_or(bytes)) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Key names; see the module docs for the layout.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    pub(super) prefix: String,
    pub(super) markers: Vec<String>,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        // For each sixteenth of the slot space, a tag that hashes into it.
        let width = 16384 / MARKERS;
        let mut markers = vec![String::new(); usize::from(MARKERS)];
        let mut found = 0;
        for n in 0u32.. {
            let key = format!("{prefix}:{{m:{n}}}:marker");
            let bucket = usize::from(slot(&key) / width);
            if markers[bucket].is_empty() {
                markers[bucket] = key;
                found += 1;
                if found == markers.len() {
                    break;
                }
            }
        }
        Self {
            prefix: prefix.to_owned(),
            markers,
        }
    }

    pub(super) fn levels(&self, sku: &str) -> String {
        format!("{}:{{s:{sku}}}:lv", self.prefix)
    }

    /// Expected receipts of a sku: `NODE\nREFERENCE` → "YYYY-MM-DD,units".
    pub(super) fn inbound(&self, sku: &str) -> String {
        format!("{}:{{s:{sku}}}:in", self.prefix)
    }

    pub(super) fn holds(&self, sku: &str) -> String {
        format!("{}:{{s:{sku}}}:ho", self.prefix)
    }

    /// Notes a reroute finished at a sku (by its token, unique to it), in the sku's slot.
    pub(super) fn reroute_done(&self, sku: &str, token: &str) -> String {
        format!("{}:{{s:{sku}}}:rrdone:{token}", self.prefix)
    }

    /// Notes a reroute undone at a sku, so that a hold of it arriving late is refused.
    pub(super) fn reroute_void(&self, sku: &str, token: &str) -> String {
        format!("{}:{{s:{sku}}}:rrvoid:{token}", self.prefix)
    }

    pub(super) fn sku_void(&self, sku: &str, token: &str) -> String {
        format!("{}:{{s:{sku}}}:void:{token}", self.prefix)
    }

    pub(super) fn record(&self, order_id: &str) -> String {
        format!("{}:{{o:{order_id}}}", self.prefix)
    }

    pub(super) fn expiry(&self) -> String {
        format!("{}:{{x}}:expiry", self.prefix)
    }

    pub(super) fn capacity_used(&self, day: i64) -> String {
        format!("{}:{{c:{day}}}:used", self.prefix)
    }

    pub(super) fn capacity_orders(&self, day: i64) -> String {
        format!("{}:{{c:{day}}}:orders", self.prefix)
    }

    /// Notes a reroute's capacity moved (by its token), in the day's slot.
    pub(super) fn capacity_reroute_done(&self, day: i64, token: &str) -> String {
        format!("{}:{{c:{day}}}:rrdone:{token}", self.prefix)
    }

    pub(super) fn capacity_void(&self, day: i64, token: &str) -> String {
        format!("{}:{{c:{day}}}:void:{token}", self.prefix)
    }

    /// A sweeper's claim on an expiry-set entry due at `due`; a re-filed entry is a new one.
    pub(super) fn claim(&self, member: &str, due: &str) -> String {
        format!("{}:{{x}}:claim:{due}:{member}", self.prefix)
    }
}

/// A token that names one attempt at reserving an order: unique across replicas and restarts.
pub(super) fn attempt_token() -> String {
    crate::store::unique_token()
}

/// The expiry-set member of an attempt: `TOKEN:ORDER` (tokens are 16 hex digits).
pub(super) fn member(token: &str, order_id: &str) -> String {
    format!("{token}:{order_id}")
}

pub(super) fn split_member(member: &str) -> Option<(&str, &str)> {
    let (token, rest) = member.split_at_checked(16)?;
    let order_id = rest.strip_prefix(':')?;
    (!order_id.is_empty()).then_some((token, order_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_spec() {
        // values from the Redis Cluster specification and `CLUSTER KEYSLOT`
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), slot("foo{}{bar}"));
        assert_ne!(slot("foo{}{bar}"), slot("bar"));
        assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
    }

    #[test]
    fn keys_of_one_sku_share_a_slot() {
        let keys = Keys::new("dom");
        let s = slot(&keys.levels("SKU-1"));
        assert_eq!(slot(&keys.holds("SKU-1")), s);
        assert_eq!(slot(&keys.sku_void("SKU-1", "0123456789abcdef")), s);
        assert_eq!(slot(&keys.capacity_used(3)), slot(&keys.capacity_orders(3)));
        let buckets: std::collections::BTreeSet<u16> =
            keys.markers.iter().map(|k| slot(k) / 1024).collect();
        assert_eq!(buckets.len(), usize::from(MARKERS));
    }

    #[test]
    fn members_name_their_attempt_and_order() {
        let token = attempt_token();
        assert_eq!(token.len(), 16);
        assert_ne!(token, attempt_token());
        let m = member(&token, "order:with:colons");
        assert_eq!(
            split_member(&m),
            Some((token.as_str(), "order:with:colons"))
        );
        assert_eq!(split_member("short"), None);
    }

    #[test]
    fn members_read_from_redis_never_panic_to_split() {
        // byte 16 inside a character, or the separator with nothing after it
        assert_eq!(
            split_member("a\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}:order"),
            None
        );
        assert_eq!(split_member("0123456789abcdef:"), None);
        assert_eq!(split_member("0123456789abcdef-order"), None);
        assert_eq!(
            split_member("0123456789abcdef:\u{e9}"),
            Some(("0123456789abcdef", "\u{e9}"))
        );
    }
}
