//! Replaying past orders against a config, so a planner sees what a change to the network or
//! the segment rules would do before it goes live. Each order of a file (JSON lines: the
//! `dom.v1.Order` message as JSON, plus when it was placed) is reserved and committed through
//! the real [`Engine`], in file order, on a private in-memory store seeded with a starting
//! stock, so scarce skus run short as the day goes on just as they would in the service. Two
//! replays of the same orders from the same stock compare two configs order by order.
//!
//! Orders are checked by the gRPC adapter's own conversion ([`convert::order`]), so an order
//! is refused here for the same reason, naming the same field, as it would be over gRPC.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{convert, pb};
use crate::clock::{ManualClock, Millis};
use crate::config::{Config, StockSeed};
use crate::domain::{DeliveryMode, Order, Plan, StrategyKind};
use crate::engine::Engine;
use crate::error::Error;
use crate::store::MemoryStore;

// ---------------------------------------------------------------------------------------------
// The orders file

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
fn file_field(field: &str) -> String {
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

// ---------------------------------------------------------------------------------------------
// Replaying

/// How a replay is made.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The strategy for every order; `None` for the config's `sourcing.default_strategy`.
    pub strategy: Option<StrategyKind>,
    /// The clock until the first order that says when it was placed; orders that do not say
    /// are placed when the order before them was.
    pub start: Millis,
}

/// What became of one order.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Held and committed as planned (the plan may leave units unfilled, where the segment
    /// allows it).
    Planned(Plan),
    /// No plan satisfies the segment's rules: the kind of refusal (see [`refusal_reason`]) and
    /// the engine's sentence.
    Refused { reason: String, message: String },
}

/// One order's decision in a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub line: usize,
    pub order_id: String,
    pub segment: String,
    pub units: u64,
    pub outcome: Outcome,
}

impl Decision {
    /// Units per (line, node), sorted; `None` when refused. Equal for two decisions that ship
    /// the same units from the same nodes.
    fn allocation(&self) -> Option<Vec<(&str, &str, u64)>> {
        let Outcome::Planned(plan) = &self.outcome else {
            return None;
        };
        let mut units: Vec<(&str, &str, u64)> = plan
            .shipments
            .iter()
            .flat_map(|s| {
                s.lines
                    .iter()
                    .map(|l| (l.line_id.as_str(), s.node_id.as_str(), l.quantity))
            })
            .collect();
        units.sort_unstable();
        Some(units)
    }

    /// For people: units per node (`wh-getafe 2 + st-madrid 1`), the units left unfilled, or
    /// why the order was refused.
    pub fn describe(&self) -> String {
        match &self.outcome {
            Outcome::Refused { reason, .. } => format!("refused ({reason})"),
            Outcome::Planned(plan) => {
                let mut parts: Vec<String> = plan
                    .shipments
                    .iter()
                    .map(|s| {
                        let units: u64 = s.lines.iter().map(|l| l.quantity).sum();
                        format!("{} {units}", s.node_id)
                    })
                    .collect();
                let unfilled = plan.unfilled_units();
                if unfilled > 0 {
                    parts.push(format!("{unfilled} unfilled"));
                }
                parts.join(" + ")
            }
        }
    }

    /// As [`Decision::describe`], with the units of each line: for two decisions that ship as
    /// many units from the same nodes, but of other lines.
    fn describe_lines(&self) -> String {
        let Outcome::Planned(plan) = &self.outcome else {
            return self.describe();
        };
        let mut parts: Vec<String> = plan
            .shipments
            .iter()
            .map(|s| {
                let lines: Vec<String> = s
                    .lines
                    .iter()
                    .map(|l| format!("line {} x{}", l.line_id, l.quantity))
                    .collect();
                format!("{} ({})", s.node_id, lines.join(", "))
            })
            .collect();
        for u in &plan.unfilled {
            parts.push(format!("line {} x{} unfilled", u.line_id, u.quantity));
        }
        parts.join(" + ")
    }

    fn cost(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Planned(plan) => Some(plan.total_cost),
            Outcome::Refused { .. } => None,
        }
    }
}

/// A replay of a file of orders against one config.
#[derive(Debug, Clone)]
pub struct Run {
    pub strategy: StrategyKind,
    /// One per order, in file order.
    pub decisions: Vec<Decision>,
    pub summary: Summary,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The config refuses an order as malformed, as the API would (an unknown segment or
    /// pickup store).
    #[error(transparent)]
    Order(#[from] OrderFileError),
    /// The engine failed for a reason that is not the order's.
    #[error("{file}:{line}: {source}")]
    Engine {
        file: String,
        line: usize,
        #[source]
        source: Error,
    },
}

/// Replays `orders` in file order against `config`, starting from `stock`: each order is
/// reserved and committed exactly as the service does it, on a store of its own.
pub async fn run(
    config: &Config,
    stock: &[StockSeed],
    orders: &OrdersFile,
    options: &Options,
) -> Result<Run, ReplayError> {
    let clock = ManualClock::new(options.start);
    let engine = Engine::new(
        config,
        Arc::new(MemoryStore::with_stock(stock)),
        Arc::new(clock.clone()),
    );
    let strategy = options
        .strategy
        .unwrap_or(config.settings.sourcing.default_strategy);
    let mut decisions = Vec::with_capacity(orders.orders.len());
    let mut summary = Summary::default();
    for o in &orders.orders {
        if let Some(at) = o.placed_at {
            clock.set(at);
        }
        let failed = |source: Error| match source {
            Error::InvalidArgument { field, problem } => ReplayError::Order(OrderFileError {
                file: orders.name.clone(),
                line: o.line,
                field: file_field(&field),
                problem,
            }),
            source => ReplayError::Engine {
                file: orders.name.clone(),
                line: o.line,
                source,
            },
        };
        let outcome = match engine.reserve(&o.order, None, Some(strategy)).await {
            Ok((reservation, _)) => {
                engine.commit(&o.order.order_id).await.map_err(failed)?;
                Outcome::Planned(reservation.plan)
            }
            Err(Error::FailedPrecondition(message)) => Outcome::Refused {
                reason: refusal_reason(&message),
                message,
            },
            Err(e) => return Err(failed(e)),
        };
        let decision = Decision {
            line: o.line,
            order_id: o.order.order_id.clone(),
            segment: o.order.segment.clone(),
            units: o.order.lines.iter().map(|l| l.quantity).sum(),
            outcome,
        };
        summary.add(&decision);
        decisions.push(decision);
    }
    Ok(Run {
        strategy,
        decisions,
        summary,
    })
}

/// A refusal's kind in a few words, to count refusals by. The engine explains each refusal in
/// a sentence naming the order and its skus; its fixed parts say which rule refused and why.
pub fn refusal_reason(message: &str) -> String {
    if message.contains("may not use pickup store") {
        return "pickup store not allowed to the segment".into();
    }
    if message.starts_with("no plan sources order") {
        let rule = if message.contains("the order is ship-complete") {
            "ship-complete"
        } else {
            "no partial plans"
        };
        let cause = if message.contains("the stock exists, but") {
            "stock too spread for the shipment limit, capacity or kits"
        } else {
            "not enough stock"
        };
        return format!("{rule}: {cause}");
    }
    message.to_owned()
}

// ---------------------------------------------------------------------------------------------
// Accounting

/// What a replay adds up to, over all orders or one segment's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub orders: u64,
    pub units: u64,
    /// Orders held and committed, including those planned wholly as backorders.
    pub planned: u64,
    /// Cost to serve of the planned orders, the segments' penalties for unfilled units
    /// included.
    pub cost: f64,
    pub shipments: u64,
    /// Planned orders shipped in more than one parcel.
    pub split: u64,
    /// Units no plan ships: those left unfilled by plans, and every unit of refused orders.
    pub unfilled_units: u64,
    pub refused: u64,
    pub refused_by_reason: BTreeMap<String, u64>,
    /// Shipments (parcels) per node.
    pub shipments_by_node: BTreeMap<String, u64>,
}

impl Totals {
    pub fn add_plan(&mut self, units: u64, plan: &Plan) {
        self.orders += 1;
        self.units += units;
        self.planned += 1;
        self.cost += plan.total_cost;
        self.shipments += plan.shipments.len() as u64;
        self.split += u64::from(plan.shipments.len() > 1);
        self.unfilled_units += plan.unfilled_units();
        for s in &plan.shipments {
            *self.shipments_by_node.entry(s.node_id.clone()).or_default() += 1;
        }
    }

    pub fn add_refusal(&mut self, units: u64, reason: &str) {
        self.orders += 1;
        self.units += units;
        self.unfilled_units += units;
        self.refused += 1;
        *self.refused_by_reason.entry(reason.to_owned()).or_default() += 1;
    }

    pub fn cost_per_planned_order(&self) -> f64 {
        self.cost / self.planned.max(1) as f64
    }

    /// Shipments per planned order; an order planned wholly as a backorder counts as zero.
    pub fn shipments_per_order(&self) -> f64 {
        self.shipments as f64 / self.planned.max(1) as f64
    }

    /// The share of planned orders shipped in more than one parcel, 0 to 1.
    pub fn split_rate(&self) -> f64 {
        self.split as f64 / self.planned.max(1) as f64
    }
}

/// Totals over all orders and per segment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub all: Totals,
    pub segments: BTreeMap<String, Totals>,
}

impl Summary {
    pub fn add(&mut self, d: &Decision) {
        let segment = self.segments.entry(d.segment.clone()).or_default();
        match &d.outcome {
            Outcome::Planned(plan) => {
                self.all.add_plan(d.units, plan);
                segment.add_plan(d.units, plan);
            }
            Outcome::Refused { reason, .. } => {
                self.all.add_refusal(d.units, reason);
                segment.add_refusal(d.units, reason);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing two replays

/// An order decided differently by two replays: other nodes or quantities, or refused by one.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub line: usize,
    pub order_id: String,
    pub segment: String,
    pub before: String,
    pub after: String,
    /// The change in the order's cost to serve, where both planned it.
    pub cost_delta: Option<f64>,
}

/// The orders `against` decides differently from `base`, in file order. Both must be replays
/// of the same orders.
pub fn changes(base: &Run, against: &Run) -> Vec<Change> {
    base.decisions
        .iter()
        .zip(&against.decisions)
        .filter(|(b, a)| b.allocation() != a.allocation())
        .map(|(b, a)| {
            debug_assert_eq!(b.order_id, a.order_id);
            let (mut before, mut after) = (b.describe(), a.describe());
            if before == after {
                (before, after) = (b.describe_lines(), a.describe_lines());
            }
            Change {
                line: b.line,
                order_id: b.order_id.clone(),
                segment: b.segment.clone(),
                before,
                after,
                cost_delta: b.cost().zip(a.cost()).map(|(b, a)| a - b),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reporting

/// A replay and the config it was made against, as named to the user.
#[derive(Debug, Clone, Copy)]
pub struct Labelled<'a> {
    pub config: &'a str,
    pub run: &'a Run,
}

/// What `dom-router replay` prints: one replay, or two side by side with their differences.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub orders_file: &'a str,
    pub base: Labelled<'a>,
    pub against: Option<Labelled<'a>>,
    /// Changed orders listed in the text (the JSON lists them all).
    pub examples: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Count,
    Money,
    Ratio,
    /// A share from 0 to 1, shown as a percentage; its change in percentage points.
    Share,
}

struct Metric {
    key: &'static str,
    label: &'static str,
    unit: Unit,
    of: fn(&Totals) -> f64,
}

const METRICS: [Metric; 9] = [
    Metric {
        key: "orders",
        label: "orders",
        unit: Unit::Count,
        of: |t| t.orders as f64,
    },
    Metric {
        key: "units",
        label: "units",
        unit: Unit::Count,
        of: |t| t.units as f64,
    },
    Metric {
        key: "planned_orders",
        label: "planned orders",
        unit: Unit::Count,
        of: |t| t.planned as f64,
    },
    Metric {
        key: "cost_to_serve",
        label: "cost to serve",
        unit: Unit::Money,
        of: |t| t.cost,
    },
    Metric {
        key: "cost_per_planned_order",
        label: "per planned order",
        unit: Unit::Money,
        of: Totals::cost_per_planned_order,
    },
    Metric {
        key: "shipments_per_order",
        label: "shipments per order",
        unit: Unit::Ratio,
        of: Totals::shipments_per_order,
    },
    Metric {
        key: "split_rate",
        label: "split rate",
        unit: Unit::Share,
        of: Totals::split_rate,
    },
    Metric {
        key: "unfilled_units",
        label: "unfilled units",
        unit: Unit::Count,
        of: |t| t.unfilled_units as f64,
    },
    Metric {
        key: "refused_orders",
        label: "refused orders",
        unit: Unit::Count,
        of: |t| t.refused as f64,
    },
];

/// One line of the table: a metric of one scope (all orders, or a segment).
struct Row {
    label: String,
    unit: Unit,
    base: f64,
    against: Option<f64>,
}

impl Unit {
    fn value(self, v: f64) -> String {
        match self {
            Unit::Count => format!("{v:.0}"),
            Unit::Money => format!("{v:.2}"),
            Unit::Ratio => format!("{v:.3}"),
            Unit::Share => format!("{:.1}%", v * 100.0),
        }
    }

    fn change(self, d: f64) -> String {
        match self {
            Unit::Count => format!("{d:+.0}"),
            Unit::Money => format!("{d:+.2}"),
            Unit::Ratio => format!("{d:+.3}"),
            Unit::Share => format!("{:+.1} pt", d * 100.0),
        }
    }

    /// As a JSON number: counts whole, money in cents, ratios to six places.
    fn json(self, v: f64) -> Value {
        match self {
            Unit::Count => json!(v as i64),
            Unit::Money => json!(round_to(v, 2)),
            Unit::Ratio | Unit::Share => json!(round_to(v, 6)),
        }
    }
}

fn round_to(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// The change relative to `base`, in percent; `None` where base is zero and the value moved.
fn percent(base: f64, against: f64) -> Option<f64> {
    if base == against {
        Some(0.0)
    } else if base == 0.0 {
        None
    } else {
        Some(100.0 * (against - base) / base.abs())
    }
}

fn rows_of(base: &Totals, against: Option<&Totals>, indent: &str, reasons: bool) -> Vec<Row> {
    let mut rows: Vec<Row> = METRICS
        .iter()
        .map(|m| Row {
            label: format!("{indent}{}", m.label),
            unit: m.unit,
            base: (m.of)(base),
            against: against.map(m.of),
        })
        .collect();
    if reasons {
        for reason in reasons_of(base, against) {
            let count = |t: &Totals| t.refused_by_reason.get(reason).copied().unwrap_or(0) as f64;
            rows.push(Row {
                label: format!("{indent}  {reason}"),
                unit: Unit::Count,
                base: count(base),
                against: against.map(count),
            });
        }
    }
    rows
}

/// Refusal reasons of either side, sorted.
fn reasons_of<'a>(base: &'a Totals, against: Option<&'a Totals>) -> BTreeSet<&'a str> {
    base.refused_by_reason
        .keys()
        .chain(against.into_iter().flat_map(|t| t.refused_by_reason.keys()))
        .map(String::as_str)
        .collect()
}

/// Segments of either side, sorted.
fn segments_of<'a>(base: &'a Summary, against: Option<&'a Summary>) -> BTreeSet<&'a str> {
    base.segments
        .keys()
        .chain(against.into_iter().flat_map(|s| s.segments.keys()))
        .map(String::as_str)
        .collect()
}

/// A line of the printed table.
enum Line {
    Blank,
    Heading(String),
    Row(Row),
}

/// The table as text, metrics aligned in columns.
fn table(lines: &[Line], two: bool) -> String {
    let width = lines
        .iter()
        .filter_map(|l| match l {
            Line::Row(r) => Some(r.label.chars().count()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    if two {
        out.push_str(&format!(
            "{:width$}  {:>12}  {:>12}  {:>12}  {:>8}\n",
            "", "base", "against", "change", "%"
        ));
    }
    for line in lines {
        match line {
            Line::Blank => out.push('\n'),
            Line::Heading(h) => {
                out.push_str(h);
                out.push('\n');
            }
            Line::Row(r) => match r.against {
                None => out.push_str(&format!(
                    "{:width$}  {:>12}\n",
                    r.label,
                    r.unit.value(r.base)
                )),
                Some(a) => {
                    let (change, pct) = if a == r.base {
                        ("0".to_owned(), "0.0%".to_owned())
                    } else {
                        let pct = percent(r.base, a).map_or("-".into(), |p| format!("{p:+.1}%"));
                        (r.unit.change(a - r.base), pct)
                    };
                    out.push_str(&format!(
                        "{:width$}  {:>12}  {:>12}  {:>12}  {:>8}\n",
                        r.label,
                        r.unit.value(r.base),
                        r.unit.value(a),
                        change,
                        pct,
                    ));
                }
            },
        }
    }
    out
}

impl Report<'_> {
    fn changes(&self) -> Option<Vec<Change>> {
        self.against.map(|a| changes(self.base.run, a.run))
    }

    /// For people: the metrics over all orders, per refusal reason and per segment; with a
    /// second config, both side by side with the changes, and the orders decided differently.
    pub fn text(&self) -> String {
        let base = &self.base.run.summary;
        let against = self.against.map(|a| &a.run.summary);
        let mut out = format!(
            "replay of {} orders from {}\n",
            base.all.orders, self.orders_file
        );
        let side = |l: Labelled| format!("{}, strategy {}", l.config, l.run.strategy);
        match self.against {
            None => out.push_str(&format!("config: {}\n\n", side(self.base))),
            Some(a) => out.push_str(&format!(
                "base:    {}\nagainst: {}\nboth from the same starting stock\n\n",
                side(self.base),
                side(a)
            )),
        }
        let mut lines: Vec<Line> = rows_of(&base.all, against.map(|s| &s.all), "", true)
            .into_iter()
            .map(Line::Row)
            .collect();
        let empty = Totals::default();
        for name in segments_of(base, against) {
            lines.push(Line::Blank);
            lines.push(Line::Heading(format!("segment {name}")));
            let b = base.segments.get(name).unwrap_or(&empty);
            let a = against.map(|s| s.segments.get(name).unwrap_or(&empty));
            lines.extend(rows_of(b, a, "  ", false).into_iter().map(Line::Row));
        }
        out.push_str(&table(&lines, self.against.is_some()));
        if let Some(changes) = self.changes() {
            out.push_str(&format!(
                "\ndecisions changed: {} of {} orders\n",
                changes.len(),
                base.all.orders
            ));
            for c in changes.iter().take(self.examples) {
                let cost = match c.cost_delta {
                    Some(d) => format!(", cost {d:+.2}"),
                    None => String::new(),
                };
                out.push_str(&format!(
                    "  {} ({}, line {}): {} -> {}{cost}\n",
                    c.order_id, c.segment, c.line, c.before, c.after
                ));
            }
            if changes.len() > self.examples {
                out.push_str(&format!(
                    "  ... and {} more (--json lists them all)\n",
                    changes.len() - self.examples
                ));
            }
        }
        out
    }

    /// For scripts: the same as one JSON object.
    pub fn json(&self) -> Value {
        let base = &self.base.run.summary;
        let against = self.against.map(|a| &a.run.summary);
        let mut out = json!({
            "orders_file": self.orders_file,
            "base": summary_json(self.base),
        });
        if let (Some(a), Some(against)) = (self.against, against) {
            out["against"] = summary_json(a);
            let mut difference = difference_json(&base.all, &against.all, true);
            let empty = Totals::default();
            let segments: serde_json::Map<String, Value> = segments_of(base, Some(against))
                .into_iter()
                .map(|name| {
                    let b = base.segments.get(name).unwrap_or(&empty);
                    let a = against.segments.get(name).unwrap_or(&empty);
                    (name.to_owned(), difference_json(b, a, false))
                })
                .collect();
            difference["segments"] = Value::Object(segments);
            out["difference"] = difference;
            let changes = self.changes().unwrap_or_default();
            out["changed_orders"] = json!(changes.len());
            out["changes"] = changes
                .iter()
                .map(|c| {
                    json!({
                        "line": c.line,
                        "order_id": c.order_id,
                        "segment": c.segment,
                        "before": c.before,
                        "after": c.after,
                        "cost_delta": c.cost_delta.map(|d| round_to(d, 2)),
                    })
                })
                .collect();
        }
        out
    }
}

fn totals_json(t: &Totals) -> serde_json::Map<String, Value> {
    let mut out: serde_json::Map<String, Value> = METRICS
        .iter()
        .map(|m| (m.key.to_owned(), m.unit.json((m.of)(t))))
        .collect();
    out.insert("refused_by_reason".into(), json!(t.refused_by_reason));
    out.insert("shipments_by_node".into(), json!(t.shipments_by_node));
    out
}

fn summary_json(l: Labelled) -> Value {
    let s = &l.run.summary;
    let mut out = totals_json(&s.all);
    out.insert("config".into(), json!(l.config));
    out.insert("strategy".into(), json!(l.run.strategy.as_str()));
    let segments: serde_json::Map<String, Value> = s
        .segments
        .iter()
        .map(|(name, t)| (name.clone(), Value::Object(totals_json(t))))
        .collect();
    out.insert("segments".into(), Value::Object(segments));
    Value::Object(out)
}

fn change_json(unit: Unit, base: f64, against: f64) -> Value {
    json!({
        "absolute": unit.json(against - base),
        "percent": percent(base, against).map(|p| round_to(p, 2)),
    })
}

fn difference_json(base: &Totals, against: &Totals, reasons: bool) -> Value {
    let mut out: serde_json::Map<String, Value> = METRICS
        .iter()
        .map(|m| {
            (
                m.key.to_owned(),
                change_json(m.unit, (m.of)(base), (m.of)(against)),
            )
        })
        .collect();
    if reasons {
        let by_reason: serde_json::Map<String, Value> = reasons_of(base, Some(against))
            .into_iter()
            .map(|reason| {
                let count =
                    |t: &Totals| t.refused_by_reason.get(reason).copied().unwrap_or(0) as f64;
                (
                    reason.to_owned(),
                    change_json(Unit::Count, count(base), count(against)),
                )
            })
            .collect();
        out.insert("refused_by_reason".into(), Value::Object(by_reason));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSource;
    use crate::domain::{GeoPoint, Network, Node, NodeKind, OrderLine, Segments, UnfilledPolicy};
    use crate::synth;

    const MADRID: (f64, f64) = (40.4165, -3.70256);
    const BARCELONA: (f64, f64) = (41.38879, 2.15899);

    fn node(id: &str, kind: NodeKind, (lat, lon): (f64, f64), capacity: u64) -> Node {
        // the sourcing tests' node, with a kind's demo costs and service figures
        let (cost, processing_days, transit_km_per_day, _) = synth::kind_defaults(kind);
        Node {
            daily_capacity_units: capacity,
            processing_days,
            transit_km_per_day,
            cost,
            ..crate::sourcing::tests::node(id, kind, lat, lon, 10)
        }
    }

    /// Two warehouses (Madrid, with `capacity_a` units a day, and Barcelona) and a Madrid
    /// store; segment `strict` ships whole orders from warehouses only, `relaxed` backorders
    /// what it cannot ship.
    fn tiny(stock: &[(&str, u64)], capacity_a: u64) -> Config {
        let mut config = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
        config.network = Network::new(
            "EUR".into(),
            vec![
                node("wh-a", NodeKind::Warehouse, MADRID, capacity_a),
                node("wh-b", NodeKind::Warehouse, BARCELONA, 1000),
                node("st-c", NodeKind::Store, MADRID, 1000),
            ],
        );
        let mut strict = synth::standard_segment();
        strict.name = "strict".into();
        strict.unfilled = UnfilledPolicy::Reject;
        strict.node_kinds = [NodeKind::Warehouse].into_iter().collect();
        let mut relaxed = synth::standard_segment();
        relaxed.name = "relaxed".into();
        relaxed.unfilled_penalty = 10.0;
        config.segments = Segments::new([strict, relaxed]);
        config.stock = stock
            .iter()
            .map(|(node, on_hand)| StockSeed {
                sku: "X".into(),
                node: (*node).into(),
                on_hand: *on_hand,
                safety_stock: 0,
            })
            .collect();
        config
    }

    fn order(id: &str, segment: &str, quantity: u64) -> Order {
        Order {
            order_id: id.into(),
            segment: segment.into(),
            destination: GeoPoint {
                lat: MADRID.0,
                lon: MADRID.1,
            },
            country: "ES".into(),
            lines: vec![OrderLine {
                line_id: "1".into(),
                sku: "X".into(),
                quantity,
                group: None,
            }],
            delivery: DeliveryMode::Ship,
            ship_complete: false,
            deliver_by: None,
        }
    }

    const NOON: Millis = 1_795_435_200_000; // 2026-11-23T12:00:00Z

    async fn replay(config: &Config, orders: Vec<Order>) -> Run {
        let orders = OrdersFile::from_orders("test", orders);
        let options = Options {
            strategy: None,
            start: NOON,
        };
        run(config, &config.stock, &orders, &options).await.unwrap()
    }

    fn plan(d: &Decision) -> &Plan {
        match &d.outcome {
            Outcome::Planned(plan) => plan,
            other => panic!("{}: {other:?}", d.order_id),
        }
    }

    #[tokio::test]
    async fn orders_take_stock_in_turn_and_every_figure_adds_up() {
        let config = tiny(&[("wh-a", 3), ("wh-b", 1)], 1000);
        let orders = vec![
            order("o1", "strict", 2),
            order("o2", "strict", 3),
            order("o3", "relaxed", 3),
        ];
        let run = replay(&config, orders.clone()).await;
        let [d1, d2, d3] = &run.decisions[..] else {
            panic!("{:?}", run.decisions)
        };
        assert_eq!(d1.describe(), "wh-a 2");
        // o2 alone would be planned: it is refused because o1 holds two of the four units
        assert!(
            matches!(&d2.outcome, Outcome::Refused { reason, .. } if reason == "no partial plans: not enough stock"),
            "{d2:?}"
        );
        let alone = replay(&config, vec![orders[1].clone()]).await;
        plan(&alone.decisions[0]);
        let p3 = plan(d3);
        assert_eq!(
            p3.shipments
                .iter()
                .flat_map(|s| &s.lines)
                .map(|l| l.quantity)
                .sum::<u64>()
                + p3.unfilled_units(),
            3
        );

        let all = &run.summary.all;
        assert_eq!(
            (all.orders, all.units, all.planned, all.refused),
            (3, 8, 2, 1)
        );
        assert_eq!(
            all.refused_by_reason,
            BTreeMap::from([("no partial plans: not enough stock".to_owned(), 1)])
        );
        let p1 = plan(d1);
        assert_eq!(all.cost, p1.total_cost + p3.total_cost);
        assert!(all.cost > 0.0);
        assert_eq!(
            all.shipments,
            (p1.shipments.len() + p3.shipments.len()) as u64
        );
        assert_eq!(
            all.split,
            u64::from(p1.shipments.len() > 1) + u64::from(p3.shipments.len() > 1)
        );
        assert_eq!(all.unfilled_units, 3 + p3.unfilled_units());
        assert_eq!(all.cost_per_planned_order(), all.cost / 2.0);
        assert_eq!(
            all.shipments_by_node.get("wh-a").copied(),
            Some(1 + u64::from(p3.shipments.iter().any(|s| s.node_id == "wh-a")))
        );

        let strict = &run.summary.segments["strict"];
        assert_eq!((strict.orders, strict.units, strict.refused), (2, 5, 1));
        assert_eq!(strict.cost, p1.total_cost);
        let relaxed = &run.summary.segments["relaxed"];
        assert_eq!((relaxed.orders, relaxed.planned), (1, 1));
        assert_eq!(relaxed.unfilled_units, p3.unfilled_units());
    }

    #[tokio::test]
    async fn the_time_an_order_was_placed_sets_its_capacity_day() {
        // wh-a ships 2 units a day; wh-b has nothing
        let config = tiny(&[("wh-a", 10)], 2);
        let text = [
            r#"{"order_id":"o1","segment":"strict","destination":{"location":{"lat":40.4165,"lon":-3.70256},"country":"ES"},"lines":[{"line_id":"1","sku":"X","quantity":2}],"placed_at":"2026-11-23T09:00:00Z"}"#,
            r#"{"order_id":"o2","segment":"strict","destination":{"location":{"lat":40.4165,"lon":-3.70256},"country":"ES"},"lines":[{"line_id":"1","sku":"X","quantity":1}],"placed_at":"2026-11-23T17:00:00+01:00"}"#,
            r#"{"order_id":"o3","segment":"strict","destination":{"location":{"lat":40.4165,"lon":-3.70256},"country":"ES"},"lines":[{"line_id":"1","sku":"X","quantity":2}],"placed_at":"2026-11-24T08:00:00Z"}"#,
            r#"{"order_id":"o4","segment":"strict","destination":{"location":{"lat":40.4165,"lon":-3.70256},"country":"ES"},"lines":[{"line_id":"1","sku":"X","quantity":1}]}"#,
        ]
        .join("\n");
        let orders = OrdersFile::parse("orders.jsonl", &text, 10).unwrap();
        let options = Options {
            strategy: None,
            start: orders.first_placed_at().unwrap(),
        };
        let run = run(&config, &config.stock, &orders, &options)
            .await
            .unwrap();
        let d = &run.decisions;
        assert_eq!(d[0].describe(), "wh-a 2");
        // the same day's capacity is used up; the next day's is not
        assert!(
            matches!(d[1].outcome, Outcome::Refused { .. }),
            "{:?}",
            d[1]
        );
        assert_eq!(d[2].describe(), "wh-a 2");
        let (first, next) = (plan(&d[0]), plan(&d[2]));
        assert_eq!(
            next.shipments[0].estimated_delivery - first.shipments[0].estimated_delivery,
            chrono::TimeDelta::days(1)
        );
        // an order without a time is placed when the one before it was: that day is full
        assert!(
            matches!(d[3].outcome, Outcome::Refused { .. }),
            "{:?}",
            d[3]
        );
    }

    #[tokio::test]
    async fn refusals_are_counted_by_the_rule_that_refused() {
        let config = tiny(&[("wh-a", 3), ("wh-b", 2), ("st-c", 5)], 1000);
        let mut complete = order("o1", "strict", 4);
        complete.ship_complete = true;
        let mut pickup = order("o2", "strict", 1);
        pickup.delivery = DeliveryMode::Pickup {
            node_id: "st-c".into(),
        };
        let short = order("o3", "strict", 11);
        let run = replay(&config, vec![complete, pickup, short]).await;
        let reasons: Vec<&str> = run
            .decisions
            .iter()
            .map(|d| match &d.outcome {
                Outcome::Refused { reason, .. } => reason.as_str(),
                Outcome::Planned(_) => "planned",
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "ship-complete: stock too spread for the shipment limit, capacity or kits",
                "pickup store not allowed to the segment",
                "no partial plans: not enough stock",
            ]
        );
        assert_eq!(run.summary.all.refused_by_reason.len(), 3);
    }

    #[tokio::test]
    async fn an_unknown_segment_is_an_error_of_the_file_naming_the_line() {
        let config = tiny(&[("wh-a", 3)], 1000);
        let orders = OrdersFile::from_orders(
            "o.jsonl",
            [order("o1", "strict", 1), order("o2", "gold", 1)],
        );
        let options = Options {
            strategy: None,
            start: NOON,
        };
        let e = run(&config, &config.stock, &orders, &options)
            .await
            .unwrap_err();
        let ReplayError::Order(e) = e else {
            panic!("{e:?}")
        };
        assert_eq!((e.line, e.field.as_str()), (2, "segment"));
        assert!(
            e.to_string()
                .starts_with("o.jsonl:2: segment: unknown segment \"gold\""),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_disabled_node_moves_the_orders_it_served() {
        let base = tiny(&[("wh-a", 3), ("wh-b", 5)], 1000);
        let mut changed = base.clone();
        let nodes = changed
            .network
            .nodes()
            .iter()
            .cloned()
            .map(|mut n| {
                n.enabled = n.id != "wh-a";
                n
            })
            .collect();
        changed.network = Network::new("EUR".into(), nodes);
        let orders = vec![order("o1", "strict", 2), order("o2", "relaxed", 1)];
        let before = replay(&base, orders.clone()).await;
        let after = replay(&changed, orders.clone()).await;
        let again = replay(&base, orders).await;
        assert!(changes(&before, &again).is_empty());
        let moved = changes(&before, &after);
        assert_eq!(moved.len(), 2, "{moved:?}");
        assert_eq!(moved[0].order_id, "o1");
        assert_eq!(moved[0].before, "wh-a 2");
        assert_eq!(moved[0].after, "wh-b 2");
        // Barcelona is farther from Madrid than wh-a
        assert!(moved[0].cost_delta.unwrap() > 0.0, "{moved:?}");

        let report = Report {
            orders_file: "o.jsonl",
            base: Labelled {
                config: "base",
                run: &before,
            },
            against: Some(Labelled {
                config: "changed",
                run: &after,
            }),
            examples: 1,
        };
        let text = report.text();
        assert!(text.contains("decisions changed: 2 of 2 orders"), "{text}");
        assert!(
            text.contains("o1 (strict, line 1): wh-a 2 -> wh-b 2, cost +"),
            "{text}"
        );
        assert!(text.contains("... and 1 more"), "{text}");
        assert!(text.contains("segment relaxed"), "{text}");
        let json = report.json();
        assert_eq!(json["changed_orders"], 2);
        let cost_before = before.summary.all.cost;
        let cost_after = after.summary.all.cost;
        assert_eq!(
            json["difference"]["cost_to_serve"]["absolute"],
            json!(round_to(cost_after - cost_before, 2))
        );
        assert_eq!(json["difference"]["orders"]["absolute"], 0);
        assert_eq!(json["base"]["shipments_by_node"]["wh-a"], 2);
        assert!(json["against"]["shipments_by_node"].get("wh-a").is_none());
        assert_eq!(
            json["difference"]["segments"]["strict"]["orders"]["percent"],
            0.0
        );
    }

    #[tokio::test]
    async fn a_change_of_lines_alone_is_shown_line_by_line() {
        let mut config = tiny(&[("wh-a", 5)], 1000);
        config.stock.push(StockSeed {
            sku: "Y".into(),
            node: "wh-a".into(),
            on_hand: 5,
            safety_stock: 0,
        });
        let mut two = order("o1", "strict", 1);
        two.lines.push(OrderLine {
            line_id: "2".into(),
            sku: "Y".into(),
            quantity: 1,
            group: None,
        });
        let before = replay(&config, vec![two]).await;
        let mut after = before.clone();
        let Outcome::Planned(plan) = &mut after.decisions[0].outcome else {
            panic!("{after:?}")
        };
        plan.shipments[0].lines.retain(|l| l.line_id == "1");
        plan.shipments[0].lines[0].quantity = 2;
        let c = changes(&before, &after);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].before, "wh-a (line 1 x1, line 2 x1)");
        assert_eq!(c[0].after, "wh-a (line 1 x2)");
    }

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

    #[test]
    fn percentages_of_nothing_are_not_invented() {
        assert_eq!(percent(0.0, 0.0), Some(0.0));
        assert_eq!(percent(0.0, 3.0), None);
        assert_eq!(percent(4.0, 3.0), Some(-25.0));
        assert_eq!(Unit::Share.change(-0.087), "-8.7 pt");
    }
}
