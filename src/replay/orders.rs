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
        let placed_at = match &self.placed_at {
            None => None,
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|_| {
                        (
                            "placed_at".to_owned(),
                            format!(
                                "{t:?} is not an RFC 3339 time such as \"2026-11-23T09:30:00Z\""
                            ),
                        )
                    })?
                    .timestamp_millis(),
            ),
        };
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

/// Orders to replay, in the order they are replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct OrdersFile {
    /// The file as named to the user, for errors.
    pub name: String,
    pub orders: Vec<ReplayOrder>,
}

impl OrdersFile {
    /// Parses and checks every line (blank lines are skipped) as the API would an order of at
    /// most `max_lines` lines; the first bad line is the error. Order ids must be unique: the
    /// service would answer a repeated id from its first reservation, never plan it again.
    pub fn parse(name: &str, text: &str, max_lines: usize) -> Result<Self, OrderFileError> {
        let mut orders = Vec::new();
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
            let record = parse_line(raw).map_err(error)?;
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
        }
    }

    /// When the first order that says so was placed.
    pub fn first_placed_at(&self) -> Option<Millis> {
        self.orders.iter().find_map(|o| o.placed_at)
    }
}

/// A line as a record; a problem names the field by its path in the JSON.
fn parse_line(raw: &str) -> Result<OrderRecord, (String, String)> {
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
