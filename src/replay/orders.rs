//! The orders file: one order a line, as JSON, read into the domain's orders through the gRPC
//! adapter's own checks, so that a bad line is named by its number and field just as the API
//! would name the field.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::api::{convert, pb};
use crate::clock::Millis;
use crate::domain::{DeliveryMode, Order};
use crate::error::Error;

/// One line of an orders file: the `dom.v1.Order` message in JSON, with the proto's field
/// names (what `grpcurl` takes as `order`), and optionally when the order was placed. Every
/// field may be left out, as in the proto; the checks that follow say what is missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderRecord {
    pub order_id: String,
    pub segment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationRecord>,
    pub lines: Vec<LineRecord>,
    /// `DELIVERY_MODE_SHIP` (also when empty) or `DELIVERY_MODE_PICKUP`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub delivery_mode: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pickup_node_id: String,
    #[serde(skip_serializing_if = "is_false")]
    pub ship_complete: bool,
    /// YYYY-MM-DD.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deliver_by: String,
    /// When the order was placed (RFC 3339): the replay's clock while it is planned, so
    /// capacity days and delivery dates are those of the day it was placed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DestinationRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationRecord>,
    pub country: String,
}

/// Both coordinates are required: the proto would read a missing one as 0, which in a file is
/// always a mistake.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationRecord {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineRecord {
    pub line_id: String,
    pub sku: String,
    pub quantity: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl OrderRecord {
    /// The record of an order placed at `placed_at`.
    pub fn new(order: &Order, placed_at: Option<DateTime<Utc>>) -> Self {
        let (delivery_mode, pickup_node_id) = match &order.delivery {
            DeliveryMode::Ship => (String::new(), String::new()),
            DeliveryMode::Pickup { node_id } => (
                pb::DeliveryMode::Pickup.as_str_name().to_owned(),
                node_id.clone(),
            ),
        };
        Self {
            order_id: order.order_id.clone(),
            segment: order.segment.clone(),
            destination: Some(DestinationRecord {
                location: Some(LocationRecord {
                    lat: order.destination.lat,
                    lon: order.destination.lon,
                }),
                country: order.country.clone(),
            }),
            lines: order
                .lines
                .iter()
                .map(|l| LineRecord {
                    line_id: l.line_id.clone(),
                    sku: l.sku.clone(),
                    quantity: i64::try_from(l.quantity).unwrap_or(i64::MAX),
                    group: l.group.clone().unwrap_or_default(),
                })
                .collect(),
            delivery_mode,
            pickup_node_id,
            ship_complete: order.ship_complete,
            deliver_by: order
                .deliver_by
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            placed_at: placed_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        }
    }

    /// The wire message, and when the order was placed. Fails (field, problem) only on what
    /// JSON spells differently from the wire: the delivery mode's name and the time.
    fn into_message(self) -> Result<(pb::Order, Option<Millis>), (String, String)> {
        let delivery_mode = if self.delivery_mode.is_empty() {
            pb::DeliveryMode::Unspecified
        } else {
            pb::DeliveryMode::from_str_name(&self.delivery_mode).ok_or_else(|| {
                (
                    "delivery_mode".to_owned(),
                    format!(
                        "unknown delivery mode {:?}; DELIVERY_MODE_SHIP or DELIVERY_MODE_PICKUP",
                        self.delivery_mode
                    ),
                )
            })?
        };
        let placed_at = placed(self.placed_at.as_deref(), "placed_at")?;
        let message = pb::Order {
            order_id: self.order_id,
            segment: self.segment,
            destination: self.destination.map(|d| pb::Destination {
                location: d.location.map(|l| pb::GeoPoint {
                    lat: l.lat,
                    lon: l.lon,
                }),
                country: d.country,
            }),
            lines: self
                .lines
                .into_iter()
                .map(|l| pb::OrderLine {
                    line_id: l.line_id,
                    sku: l.sku,
                    quantity: l.quantity,
                    group: l.group,
                })
                .collect(),
            delivery_mode: delivery_mode as i32,
            pickup_node_id: self.pickup_node_id,
            ship_complete: self.ship_complete,
            deliver_by: self.deliver_by,
        };
        Ok((message, placed_at))
    }
}

/// A line of an orders file that is not a well-formed order, or an order a config refuses as
/// malformed (an unknown segment or pickup store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFileError {
    pub file: String,
    /// 1-based, counting blank lines.
    pub line: usize,
    /// As in the JSON (`lines[0].quantity`); empty when the line as a whole is wrong.
    pub field: String,
    pub problem: String,
}

impl fmt::Display for OrderFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.problem)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.field, self.problem
            )
        }
    }
}

impl std::error::Error for OrderFileError {}

/// The field of an order as the file spells it: the API names fields from the request down
/// (`order.lines[0].quantity`), a line of the file is the order itself.
pub(super) fn file_field(field: &str) -> String {
    field.strip_prefix("order.").unwrap_or(field).to_owned()
}

/// An order of a file, and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOrder {
    pub line: usize,
    pub order: Order,
    pub placed_at: Option<Millis>,
}

/// A line of an orders file that is not an order but something that happened between orders:
/// `{"event": "stock", ...}`, a feed update (the `dom.v1.StockUpdate` message in JSON, its
/// sequence given by the replay), or `{"event": "reject", ...}`, a node turning down units of
/// an order (the `dom.v1.RerouteRequest` message, its id given by the replay); and optionally
/// when it happened (`at`, RFC 3339).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventRecord {
    /// `stock` or `reject`.
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    // a stock update
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sku: String,
    /// `STOCK_UPDATE_KIND_SNAPSHOT`, `STOCK_UPDATE_KIND_DELTA` or `STOCK_UPDATE_KIND_INBOUND`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub quantity: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_stock: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub expected_date: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reference: String,
    // a rejection
    #[serde(skip_serializing_if = "String::is_empty")]
    pub order_id: String,
    /// `REROUTE_REASON_SHORT_PICK`, ..._DAMAGED, ..._NODE_UNAVAILABLE, ..._STORE_REJECTED or
    /// ..._OTHER.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<RejectLineRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RejectLineRecord {
    pub line_id: String,
    pub quantity: i64,
}

/// What happened between orders, as the replay makes it happen.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A feed update; its sequence is given when it is applied.
    Stock(pb::StockUpdate),
    /// A node turns down units of an order; its id is given when it is applied.
    Reject(pb::RerouteRequest),
}

/// A stock event or a rejection of a file, where it is and when it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayEvent {
    pub line: usize,
    pub at: Option<Millis>,
    /// How many orders of the file come before it.
    pub after: usize,
    pub kind: EventKind,
}

impl EventRecord {
    fn into_event(self, line: usize, after: usize) -> Result<ReplayEvent, (String, String)> {
        let at = placed(self.at.as_deref(), "at")?;
        let kind = match self.event.as_str() {
            "stock" => {
                let kind = match self.kind.as_str() {
                    "STOCK_UPDATE_KIND_SNAPSHOT" => pb::StockUpdateKind::Snapshot,
                    "STOCK_UPDATE_KIND_DELTA" => pb::StockUpdateKind::Delta,
                    "STOCK_UPDATE_KIND_INBOUND" => pb::StockUpdateKind::Inbound,
                    other => {
                        return Err((
                            "kind".into(),
                            format!(
                                "{other:?} is not replayed; STOCK_UPDATE_KIND_SNAPSHOT, STOCK_UPDATE_KIND_DELTA or STOCK_UPDATE_KIND_INBOUND"
                            ),
                        ));
                    }
                };
                if !self.order_id.is_empty() || !self.reason.is_empty() || !self.lines.is_empty() {
                    return Err((
                        String::new(),
                        "a stock event has no order_id, reason or lines".into(),
                    ));
                }
                EventKind::Stock(pb::StockUpdate {
                    node_id: self.node_id,
                    sku: self.sku,
                    kind: kind as i32,
                    quantity: self.quantity,
                    safety_stock: self.safety_stock,
                    expected_date: self.expected_date,
                    reference: self.reference,
                    ..Default::default()
                })
            }
            "reject" => {
                let reason = pb::RerouteReason::from_str_name(&self.reason)
                    .filter(|r| *r != pb::RerouteReason::Unspecified)
                    .ok_or_else(|| {
                        (
                            "reason".to_owned(),
                            format!(
                                "{:?} is not a reason; REROUTE_REASON_SHORT_PICK, REROUTE_REASON_DAMAGED, REROUTE_REASON_NODE_UNAVAILABLE, REROUTE_REASON_STORE_REJECTED or REROUTE_REASON_OTHER",
                                self.reason
                            ),
                        )
                    })?;
                if !self.sku.is_empty()
                    || !self.kind.is_empty()
                    || self.quantity != 0
                    || self.safety_stock.is_some()
                    || !self.expected_date.is_empty()
                    || !self.reference.is_empty()
                {
                    return Err((
                        String::new(),
                        "a reject event has no sku, kind, quantity, safety_stock, expected_date or reference".into(),
                    ));
                }
                EventKind::Reject(pb::RerouteRequest {
                    order_id: self.order_id,
                    node_id: self.node_id,
                    lines: self
                        .lines
                        .into_iter()
                        .map(|l| pb::RerouteLine {
                            line_id: l.line_id,
                            quantity: l.quantity,
                        })
                        .collect(),
                    reason: reason as i32,
                    reroute_id: String::new(),
                })
            }
            other => {
                return Err((
                    "event".into(),
                    format!("{other:?} is not an event; \"stock\" or \"reject\""),
                ));
            }
        };
        Ok(ReplayEvent {
            line,
            at,
            after,
            kind,
        })
    }
}

/// A time of a file (RFC 3339) as milliseconds; the problem names `field`.
fn placed(t: Option<&str>, field: &str) -> Result<Option<Millis>, (String, String)> {
    let Some(t) = t else { return Ok(None) };
    DateTime::parse_from_rfc3339(t)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|_| {
            (
                field.to_owned(),
                format!("{t:?} is not an RFC 3339 time such as \"2026-11-23T09:30:00Z\""),
            )
        })
}

/// Orders to replay, in the order they are replayed, and what happened between them.
#[derive(Debug, Clone, PartialEq)]
pub struct OrdersFile {
    /// The file as named to the user, for errors.
    pub name: String,
    pub orders: Vec<ReplayOrder>,
    /// Stock events and rejections, in file order.
    pub events: Vec<ReplayEvent>,
}

impl OrdersFile {
    /// Parses and checks every line (blank lines are skipped) as the API would an order of at
    /// most `max_lines` lines; the first bad line is the error. Order ids must be unique: the
    /// service would answer a repeated id from its first reservation, never plan it again.
    pub fn parse(name: &str, text: &str, max_lines: usize) -> Result<Self, OrderFileError> {
        let mut orders = Vec::new();
        let mut events = Vec::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let error = |(field, problem): (String, String)| OrderFileError {
                file: name.to_owned(),
                line,
                field,
                problem,
            };
            if is_event(raw) {
                let record: EventRecord = parse_line(raw).map_err(error)?;
                events.push(record.into_event(line, orders.len()).map_err(error)?);
                continue;
            }
            let record: OrderRecord = parse_line(raw).map_err(error)?;
            let (message, placed_at) = record.into_message().map_err(error)?;
            let order = convert::order(Some(message), max_lines).map_err(|e| error(invalid(e)))?;
            if let Some(first) = first_line.get(&order.order_id) {
                return Err(error((
                    "order_id".into(),
                    format!("{:?} is also the order on line {first}", order.order_id),
                )));
            }
            first_line.insert(order.order_id.clone(), line);
            orders.push(ReplayOrder {
                line,
                order,
                placed_at,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            orders,
            events,
        })
    }

    /// Orders made elsewhere (a generator), numbered as lines in turn, with no time of placing.
    pub fn from_orders(name: &str, orders: impl IntoIterator<Item = Order>) -> Self {
        Self {
            name: name.to_owned(),
            orders: orders
                .into_iter()
                .enumerate()
                .map(|(i, order)| ReplayOrder {
                    line: i + 1,
                    order,
                    placed_at: None,
                })
                .collect(),
            events: Vec::new(),
        }
    }

    /// When the first order that says so was placed.
    pub fn first_placed_at(&self) -> Option<Millis> {
        self.orders.iter().find_map(|o| o.placed_at)
    }
}

/// Whether a line is an event: a JSON object with an `event` key.
fn is_event(raw: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw)
        .is_ok_and(|m| m.contains_key("event"))
}

/// A line as a record; a problem names the field by its path in the JSON.
fn parse_line<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, (String, String)> {
    let mut de = serde_json::Deserializer::from_str(raw);
    let record = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        // "." is the line itself; "?" a key the parser never finished reading
        let path = e.path().to_string();
        let field = path.trim_end_matches('?').trim_end_matches('.').to_owned();
        (field, json_problem(&e.into_inner()))
    })?;
    de.end().map_err(|e| (String::new(), json_problem(&e)))?;
    Ok(record)
}

/// serde_json's message with "line 1" taken out: a file line is one JSON document, so only the
/// column means anything.
fn json_problem(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match message.strip_suffix(&position) {
        Some(problem) => format!("{problem} (column {})", e.column()),
        None => message,
    }
}

/// The field and problem of an invalid argument, as the file names the field.
fn invalid(e: Error) -> (String, String) {
    match e {
        Error::InvalidArgument { field, problem } => (file_field(&field), problem),
        other => (String::new(), other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderLine;
    use crate::replay::fixtures::{NOON, order};

    fn parse_err(text: &str) -> OrderFileError {
        OrdersFile::parse("orders.jsonl", text, 10).unwrap_err()
    }

    const GOOD: &str = r#"{"order_id":"o1","segment":"vip","destination":{"location":{"lat":40.4,"lon":-3.7},"country":"ES"},"lines":[{"line_id":"1","sku":"A","quantity":2}]}"#;

    #[test]
    fn a_bad_line_is_named_by_its_number_and_field() {
        let zero = GOOD
            .replace(r#""o1""#, r#""o2""#)
            .replace(r#""quantity":2"#, r#""quantity":0"#);
        let e = parse_err(&format!("{GOOD}\n\n{zero}\n"));
        assert_eq!((e.line, e.field.as_str()), (3, "lines[0].quantity"));
        assert_eq!(
            e.to_string(),
            "orders.jsonl:3: lines[0].quantity: must be at least 1, got 0"
        );

        let cases = [
            (
                GOOD.replace(r#""quantity":2"#, r#""quantity":"2""#),
                "lines[0].quantity",
                "invalid type: string \"2\", expected i64",
            ),
            (
                GOOD.replace(r#""quantity":2"#, r#""qty":2"#),
                "lines[0].qty",
                "unknown field `qty`",
            ),
            (
                GOOD.replace(r#""lat":40.4,"#, ""),
                "destination.location",
                "missing field `lat`",
            ),
            (
                GOOD.replace(r#""lat":40.4"#, r#""lat":140.4"#),
                "destination.location.lat",
                "latitude 140.4 is outside -90..90",
            ),
            (
                GOOD.replace(r#""ES""#, r#""Spain""#),
                "destination.country",
                "is not an ISO 3166-1 alpha-2 code",
            ),
            (
                GOOD.replace(r#""vip""#, r#""""#),
                "segment",
                "must not be empty",
            ),
            (
                GOOD.replace(
                    r#","destination":{"location":{"lat":40.4,"lon":-3.7},"country":"ES"}"#,
                    "",
                ),
                "destination",
                "is required",
            ),
            (
                GOOD.replacen('{', r#"{"placed_at":"yesterday","#, 1),
                "placed_at",
                "is not an RFC 3339 time",
            ),
            (
                GOOD.replacen('{', r#"{"delivery_mode":"DELIVERY_MODE_DRONE","#, 1),
                "delivery_mode",
                "unknown delivery mode",
            ),
            (
                GOOD.replacen('{', r#"{"delivery_mode":"DELIVERY_MODE_PICKUP","#, 1),
                "pickup_node_id",
                "is required for pickup orders",
            ),
            (
                GOOD.replacen('{', r#"{"deliver_by":"soon","#, 1),
                "deliver_by",
                "is not a date",
            ),
            (GOOD[..40].to_owned(), "", "EOF while parsing"),
            (format!("{GOOD} {{}}"), "", "trailing characters (column"),
            ("o1,vip,A,2".to_owned(), "", "expected value (column 1)"),
        ];
        for (line, field, problem) in cases {
            let e = parse_err(&line);
            assert_eq!((e.line, e.field.as_str()), (1, field), "{e}");
            assert!(e.problem.contains(problem), "{e}");
        }

        let e = parse_err(&format!("{GOOD}\n{GOOD}"));
        assert_eq!((e.line, e.field.as_str()), (2, "order_id"));
        assert!(e.problem.contains("line 1"), "{e}");
    }

    #[test]
    fn an_order_is_refused_for_the_reason_the_api_gives() {
        let line = GOOD.replace(r#""quantity":2"#, r#""quantity":-3"#);
        let record: OrderRecord = serde_json::from_str(&line).unwrap();
        let (message, _) = record.into_message().unwrap();
        let Err(Error::InvalidArgument { field, problem }) = convert::order(Some(message), 10)
        else {
            panic!("the API accepts it")
        };
        let e = parse_err(&line);
        assert_eq!(format!("order.{}", e.field), field);
        assert_eq!(e.problem, problem);
        // the API's line limit, from the config
        let lines: Vec<String> = (0..3)
            .map(|i| format!(r#"{{"line_id":"{i}","sku":"A","quantity":1}}"#))
            .collect();
        let three = GOOD.replace(
            r#"[{"line_id":"1","sku":"A","quantity":2}]"#,
            &format!("[{}]", lines.join(",")),
        );
        assert!(OrdersFile::parse("f", &three, 3).is_ok());
        assert_eq!(
            OrdersFile::parse("f", &three, 2).unwrap_err().field,
            "lines"
        );
    }

    #[test]
    fn a_record_of_an_order_reads_back_as_the_same_order() {
        let mut o = order("o-9", "relaxed", 4);
        o.lines.push(OrderLine {
            line_id: "2".into(),
            sku: "Y".into(),
            quantity: 1,
            group: Some("kit".into()),
        });
        o.lines[0].group = Some("kit".into());
        o.delivery = DeliveryMode::Pickup {
            node_id: "st-c".into(),
        };
        o.ship_complete = true;
        o.deliver_by = chrono::NaiveDate::from_ymd_opt(2026, 11, 30);
        let at = DateTime::from_timestamp_millis(NOON).unwrap();
        let line = serde_json::to_string(&OrderRecord::new(&o, Some(at))).unwrap();
        assert!(
            line.contains(r#""placed_at":"2026-11-23T12:00:00Z""#),
            "{line}"
        );
        let parsed = OrdersFile::parse("f", &line, 10).unwrap();
        assert_eq!(parsed.orders[0].order, o);
        assert_eq!(parsed.orders[0].placed_at, Some(NOON));
        // what the proto leaves out by default, the record does too
        let plain = serde_json::to_string(&OrderRecord::new(&order("o", "s", 1), None)).unwrap();
        assert!(
            !plain.contains("delivery_mode") && !plain.contains("group"),
            "{plain}"
        );
    }
}
