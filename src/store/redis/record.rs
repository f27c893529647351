//! Reservation records and holds as Redis stores them, and the reading of scripts' replies:
//! the record an order's reserve writes, the parts of it a read looks at for a due attempt, a
//! sku's hold of one attempt, and the record as it is now (settled first when it is due).

use redis::Value;
use serde::{Deserialize, Serialize};

use super::RedisStore;
use super::connection::Conn;
use crate::clock::Millis;
use crate::domain::Plan;
use crate::store::reroute::take_waiting;
use crate::store::{
    Allocation, Decision, Gone, RerouteHold, Reservation, ReservationState, StoreError,
    WaitingUnits,
};

/// The part of a reservation that never changes once written.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Body {
    pub(super) order_id: String,
    pub(super) fingerprint: String,
    pub(super) segment: String,
    pub(super) plan: Plan,
    pub(super) created_at: Millis,
    pub(super) capacity_day: i64,
    /// The order, to plan its units again (records made before it was kept have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) order: Option<crate::domain::Order>,
    /// Units waiting for supply from the start (later ones are kept apart, in `wt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) waiting: Vec<WaitingUnits>,
}

/// A reroute under way, as the record notes it (see `reroute.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Rerouting {
    /// The reroute's token.
    pub(super) t: String,
    /// The day whose node capacity the order takes.
    pub(super) day: i64,
    pub(super) hold: RerouteHold,
}

/// A reservation record as stored.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) state: String,
    pub(super) token: String,
    pub(super) expires_at: Millis,
    pub(super) deadline: Millis,
    pub(super) body: Body,
    pub(super) allocations: Vec<Allocation>,
    /// Lines being given back (none named: all), and by when a sweep should finish it.
    pub(super) releasing: Option<(Vec<String>, Millis)>,
    /// A reroute under way, by when a sweep should finish or undo it, and whether it was
    /// decided (then it is only ever finished).
    pub(super) rerouting: Option<(Rerouting, Millis, bool)>,
    pub(super) history: Vec<Decision>,
    /// Units waiting for supply after the first decision (those from the start are in the
    /// body).
    pub(super) waiting: Vec<WaitingUnits>,
    /// Units that left the waiting ones since: filled, cancelled, or released.
    pub(super) taken: Vec<Gone>,
}

impl Record {
    pub(super) fn reservation(&self) -> Result<Reservation, StoreError> {
        let Some(state) = ReservationState::parse(&self.state) else {
            return Err(StoreError::Corrupt(format!(
                "order {:?} has no reservation yet (its record is {})",
                self.body.order_id, self.state
            )));
        };
        let b = &self.body;
        Ok(Reservation {
            order_id: b.order_id.clone(),
            fingerprint: b.fingerprint.clone(),
            segment: b.segment.clone(),
            state,
            plan: b.plan.clone(),
            allocations: self.allocations.clone(),
            created_at: b.created_at,
            expires_at: (self.expires_at > 0).then_some(self.expires_at),
            capacity_day: b.capacity_day,
            order: b.order.clone(),
            history: self.history.clone(),
            waiting: self.waiting_now(state)?,
        })
    }

    /// The units waiting now: none once the reservation is released or expired.
    fn waiting_now(&self, state: ReservationState) -> Result<Vec<WaitingUnits>, StoreError> {
        if !matches!(
            state,
            ReservationState::Held | ReservationState::Committed | ReservationState::Fulfilled
        ) {
            return Ok(Vec::new());
        }
        let all: Vec<WaitingUnits> = self
            .body
            .waiting
            .iter()
            .chain(&self.waiting)
            .cloned()
            .collect();
        take_waiting(&all, &self.taken).ok_or_else(|| {
            corrupt(format!(
                "order {:?} has taken more units from those waiting than waited",
                self.body.order_id
            ))
        })
    }

    /// Still being made, or abandoned while being made.
    pub(super) fn unfinished(&self) -> bool {
        matches!(self.state.as_str(), "pending" | "aborted")
    }

    pub(super) fn skus(&self) -> Vec<String> {
        distinct_skus(&self.allocations)
    }
}

/// The skus of some allocations, sorted, each once.
pub(super) fn distinct_skus<'a>(
    allocations: impl IntoIterator<Item = &'a Allocation>,
) -> Vec<String> {
    let mut skus: Vec<String> = allocations.into_iter().map(|a| a.sku.clone()).collect();
    skus.sort();
    skus.dedup();
    skus
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(super) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(super) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|t| t.parse().ok()),
    }
}

pub(super) fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(v) | Value::Set(v) => v,
        Value::Nil => Vec::new(),
        other => vec![other],
    }
}

/// The fields of a record a script's reply or a read gives, in order.
pub(super) const RECORD_FIELDS: [&str; 15] = [
    "st", "tok", "exp", "dl", "day", "body", "al", "rel", "rdl", "rr", "rrdl", "rrd", "hist", "wt",
    "wf",
];

/// A script's reply `{code, st, tok, exp, dl, day, body, al, rel, rdl, rr, rrdl, rrd, hist,
/// wt, wf}`: the code, and the record if any.
pub(super) fn coded_record(reply: Value) -> Result<(String, Option<Record>), StoreError> {
    let values = items(reply);
    let code = values
        .first()
        .and_then(text)
        .ok_or_else(|| corrupt("a script reply without a code"))?;
    let record = match values.get(1..) {
        Some(fields) if fields.len() >= 9 => parse_record(fields)?,
        _ => None,
    };
    Ok((code, record))
}

fn parse_record(v: &[Value]) -> Result<Option<Record>, StoreError> {
    let Some(state) = v.first().and_then(text) else {
        return Ok(None);
    };
    let field = |i: usize, name: &str| {
        v.get(i)
            .and_then(text)
            .ok_or_else(|| corrupt(format!("a reservation record without {name}")))
    };
    let body_text = field(5, "its body")?;
    let body: Body = serde_json::from_str(&body_text)
        .map_err(|e| corrupt(format!("a reservation body: {e}")))?;
    let al = field(6, "its allocations")?;
    let allocations: Vec<Allocation> = if al == "{}" {
        Vec::new()
    } else {
        serde_json::from_str(&al).map_err(|e| corrupt(format!("reservation allocations: {e}")))?
    };
    let number = |i: usize, name: &str| -> Result<Millis, StoreError> {
        v.get(i)
            .and_then(int)
            .ok_or_else(|| corrupt(format!("a reservation record without {name}")))
    };
    let releasing = match (v.get(7).and_then(text), v.get(8).and_then(int)) {
        (Some(lines), Some(deadline)) => Some((
            serde_json::from_str(&lines)
                .map_err(|e| corrupt(format!("lines being released: {e}")))?,
            deadline,
        )),
        _ => None,
    };
    let rerouting = match (v.get(9).and_then(text), v.get(10).and_then(int)) {
        (Some(rr), Some(deadline)) => Some((
            serde_json::from_str(&rr).map_err(|e| corrupt(format!("a reroute under way: {e}")))?,
            deadline,
            v.get(11).and_then(text).is_some(),
        )),
        _ => None,
    };
    Ok(Some(Record {
        state,
        token: field(1, "its token")?,
        expires_at: number(2, "its expiry")?,
        deadline: number(3, "its deadline")?,
        body,
        allocations,
        releasing,
        rerouting,
        history: json_list(v.get(12), "history")?,
        waiting: json_list(v.get(13), "waiting units")?,
        taken: json_list(v.get(14), "units no longer waiting")?,
    }))
}

/// A list kept as JSON in a record field; empty when the field is absent.
fn json_list<T: serde::de::DeserializeOwned>(
    value: Option<&Value>,
    name: &str,
) -> Result<Vec<T>, StoreError> {
    match value.and_then(text) {
        Some(t) if t != "{}" => {
            serde_json::from_str(&t).map_err(|e| corrupt(format!("a reservation's {name}: {e}")))
        }
        _ => Ok(Vec::new()),
    }
}

/// What a due attempt gives back when it is settled.
#[derive(Debug)]
pub(super) enum Gives {
    All,
    Lines(Vec<String>),
}

impl Gives {
    pub(super) fn covers(&self, line_id: &str) -> bool {
        match self {
            Gives::All => true,
            Gives::Lines(lines) => lines.iter().any(|l| l == line_id),
        }
    }
}

/// The parts of a reservation record that say what settling it gives back.
#[derive(Debug)]
pub(super) struct DueRecord {
    pub(super) state: String,
    pub(super) token: String,
    pub(super) expires_at: Millis,
    pub(super) deadline: Millis,
    pub(super) day: Option<i64>,
    pub(super) allocations: Vec<Allocation>,
    pub(super) releasing: Option<(Vec<String>, Millis)>,
    /// A reroute is under way: the sweep finishes or undoes it before it gives anything back.
    pub(super) rerouting: bool,
}

impl DueRecord {
    /// From `HMGET st tok exp dl day al rel rdl rr`; `None` when there is no record, or it
    /// does not read (then a read counts its units, as the sweep cannot give them back either).
    pub(super) fn parse(v: &[Value]) -> Option<Self> {
        let state = text(v.first()?)?;
        let number = |i: usize| v.get(i).and_then(int);
        let releasing = match (v.get(6).and_then(text), number(7)) {
            (Some(lines), Some(deadline)) => Some((serde_json::from_str(&lines).ok()?, deadline)),
            _ => None,
        };
        let allocations = match v.get(5).and_then(text) {
            Some(al) if al != "{}" => serde_json::from_str(&al).ok()?,
            _ => Vec::new(),
        };
        Some(Self {
            state,
            token: v.get(1).and_then(text)?,
            expires_at: number(2)?,
            deadline: number(3)?,
            day: number(4),
            allocations,
            releasing,
            rerouting: v.get(8).and_then(text).is_some(),
        })
    }

    /// What settling this record for attempt `token` at `now` gives back, as
    /// [`RedisStore::settle_attempt`] decides it.
    pub(super) fn gives(&self, token: &str, now: Millis) -> Option<Gives> {
        if self.token != token || self.rerouting {
            return None;
        }
        match self.state.as_str() {
            "held" if self.expires_at <= now => Some(Gives::All),
            "pending" if self.deadline.min(self.expires_at) <= now => Some(Gives::All),
            "aborted" | "expired" => Some(Gives::All),
            "held" | "committed" => match &self.releasing {
                // a release of every line still keeps the capacity of units shipped
                Some((lines, deadline)) if *deadline <= now => Some(if lines.is_empty() {
                    Gives::Lines(self.allocations.iter().map(|a| a.line_id.clone()).collect())
                } else {
                    Gives::Lines(lines.clone())
                }),
                _ => None,
            },
            _ => None,
        }
    }
}

/// A hold as a sku's holds hash keeps it: the attempt's token and (line, node, units) parts.
#[derive(Debug, Deserialize)]
pub(super) struct StoredHold {
    pub(super) t: String,
    pub(super) a: Vec<(String, String, u64)>,
}

impl RedisStore {
    pub(super) async fn read_record(
        &self,
        conn: &Conn,
        order_id: &str,
    ) -> Result<Option<Record>, StoreError> {
        let values: Vec<Value> = self
            .query(
                conn,
                redis::cmd("HMGET")
                    .arg(self.inner.keys.record(order_id))
                    .arg(&RECORD_FIELDS),
            )
            .await?;
        if values.len() != RECORD_FIELDS.len() {
            return Err(corrupt("a reservation record of the wrong shape"));
        }
        parse_record(&values)
    }

    /// The record of an order, with a hold past its expiry expired and an attempt past its
    /// deadline rolled back first.
    pub(super) async fn current_record(
        &self,
        conn: &Conn,
        order_id: &str,
        now: Millis,
    ) -> Result<Option<Record>, StoreError> {
        let Some(record) = self.read_record(conn, order_id).await? else {
            return Ok(None);
        };
        let rerouting_due = record
            .rerouting
            .as_ref()
            .is_some_and(|(_, at, _)| *at <= now);
        let due = rerouting_due
            || match record.state.as_str() {
                "held" => record.expires_at <= now,
                "pending" => record.deadline.min(record.expires_at) <= now,
                "aborted" => true,
                _ => false,
            };
        if !due {
            return Ok(Some(record));
        }
        self.settle_attempt(conn, order_id, &record.token, now)
            .await?;
        self.read_record(conn, order_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_of_any_shape_read_as_corrupt_or_without_a_record() {
        assert!(matches!(
            coded_record(Value::Nil),
            Err(StoreError::Corrupt(m)) if m.contains("without a code")
        ));
        assert!(matches!(
            coded_record(Value::Array(vec![Value::Nil])),
            Err(StoreError::Corrupt(_))
        ));
        for len in 1..10 {
            let mut reply = vec![bulk("exists"), bulk("held")];
            reply.resize(len, bulk("1"));
            let (code, record) = coded_record(Value::Array(reply)).unwrap();
            assert_eq!(code, "exists");
            assert!(record.is_none(), "{len} values");
        }
        // a state, then fields that are missing or do not parse
        let mut reply = vec![bulk("exists"), bulk("held")];
        reply.resize(10, Value::Nil);
        assert!(matches!(
            coded_record(Value::Array(reply.clone())),
            Err(StoreError::Corrupt(m)) if m.contains("without its body")
        ));
        reply[6] = bulk("not json");
        assert!(matches!(
            coded_record(Value::Array(reply)),
            Err(StoreError::Corrupt(m)) if m.contains("a reservation body")
        ));
    }

    #[test]
    fn due_records_of_any_shape_read_as_none() {
        assert!(DueRecord::parse(&[]).is_none());
        assert!(DueRecord::parse(&[bulk("held"), bulk("tok")]).is_none());
        let mut fields = vec![bulk("held"), bulk("tok"), bulk("5"), bulk("6"), Value::Nil];
        fields.extend([bulk("[not json"), Value::Nil, Value::Nil]);
        assert!(DueRecord::parse(&fields).is_none());
    }
}
