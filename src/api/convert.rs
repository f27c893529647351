//! Conversions between the protobuf messages of `dom.v1` and the domain types, with the
//! validation of everything a client sends: an error names the field (as the proto spells it)
//! and the problem.
//!
//! The file passes 600 lines only by its unit tests; the code before them reads in one sitting.

use std::collections::HashSet;

use prost_types::Timestamp;

use super::pb;
use crate::clock::Millis;
use crate::domain::{
    DeliveryMode, GeoPoint, NodeKind, NodeReason, Order, OrderLine, Plan, SolveStatus, StrategyKind,
};
use crate::engine::RerouteCall;
use crate::error::Error;
use crate::store::{
    Allocation, Decision, DecisionKind, Fate, ReorderPoint, RerouteReason, Reservation,
    ReservationState, StockLevel, StockUpdate, UnitFate, UpdateKind, shown,
};

/// The most units one order line may ask for.
pub const MAX_LINE_QUANTITY: i64 = 1_000_000;
/// The longest id (order, line, sku, node, segment) accepted.
pub const MAX_ID_LEN: usize = 128;
/// The bound on stock figures, as the wire's signed type.
const MAX_STOCK: i64 = crate::store::MAX_STOCK_UNITS as i64;

/// The one rule for every id a client sends (order, line, sku, node, segment, group): 1 to
/// [`MAX_ID_LEN`] bytes, not blank, no control characters.
pub fn id(field: &str, value: &str) -> Result<String, Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "must not be blank"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            field,
            format!("is {} bytes long; the limit is {MAX_ID_LEN}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// An id as a rejection echoes it back: whole when it is within [`MAX_ID_LEN`] bytes, else cut
/// there (on a character boundary), so a list of rejections stays bounded.
pub fn cut_id(value: &str) -> String {
    if value.len() <= MAX_ID_LEN {
        return value.to_owned();
    }
    let mut end = MAX_ID_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_owned()
}

/// Units a reservation holds now: what is outstanding while it is held or committed, none once
/// it is released, expired or fulfilled.
pub fn units_held(r: &Reservation) -> u64 {
    match r.state {
        ReservationState::Held | ReservationState::Committed => {
            r.allocations.iter().map(|a| a.outstanding()).sum()
        }
        ReservationState::Released | ReservationState::Expired | ReservationState::Fulfilled => 0,
    }
}

/// Whether every unit of the order is held, allocated or shipped: nothing left unfilled by
/// the plan, nothing given back, and the reservation neither released nor expired.
pub fn complete(r: &Reservation) -> bool {
    let live = matches!(
        r.state,
        ReservationState::Held | ReservationState::Committed | ReservationState::Fulfilled
    );
    live && r.plan.unfilled.is_empty() && r.allocations.iter().all(|a| a.released == 0)
}

/// A required id for one kind of request: empty says what needs it; otherwise [`id`]'s rule.
fn required_id(field: &str, value: &str, needed_for: &str) -> Result<String, Error> {
    if value.is_empty() {
        return Err(Error::invalid(field, format!("is required {needed_for}")));
    }
    id(field, value)
}

/// A date as exactly YYYY-MM-DD, years 2000 to 9999: nothing before, after or around it.
fn date(field: &str, value: &str) -> Result<chrono::NaiveDate, Error> {
    let bad = || {
        Error::invalid(
            field,
            format!(
                "{} is not a date as YYYY-MM-DD between 2000-01-01 and 9999-12-31",
                shown(value)
            ),
        )
    };
    let b = value.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape {
        return Err(bad());
    }
    let d = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())?;
    if chrono::Datelike::year(&d) < 2000 {
        return Err(bad());
    }
    Ok(d)
}

/// An order from the wire, checked for shape. Whether its segment and pickup store exist is
/// for admission to check, against the rules in force ([`crate::sourcing::Admitted`]).
pub fn order(o: Option<pb::Order>, max_lines: usize) -> Result<Order, Error> {
    let o = o.ok_or_else(|| Error::invalid("order", "is required"))?;
    let order_id = id("order.order_id", &o.order_id)?;
    let segment = id("order.segment", &o.segment)?;
    let dest = o
        .destination
        .ok_or_else(|| Error::invalid("order.destination", "is required"))?;
    let loc = dest
        .location
        .ok_or_else(|| Error::invalid("order.destination.location", "is required"))?;
    let destination = GeoPoint::new(loc.lat, loc.lon).map_err(|problem| {
        let field = if problem.starts_with("latitude") {
            "order.destination.location.lat"
        } else {
            "order.destination.location.lon"
        };
        Error::invalid(field, problem)
    })?;
    if dest.country.len() != 2 || !dest.country.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(Error::invalid(
            "order.destination.country",
            format!(
                "{} is not an ISO 3166-1 alpha-2 code such as \"ES\"",
                shown(&dest.country)
            ),
        ));
    }
    if o.lines.is_empty() {
        return Err(Error::invalid(
            "order.lines",
            "an order needs at least one line",
        ));
    }
    if o.lines.len() > max_lines {
        return Err(Error::invalid(
            "order.lines",
            format!("{} lines; the limit is {max_lines}", o.lines.len()),
        ));
    }
    let mut seen = HashSet::new();
    let mut lines = Vec::with_capacity(o.lines.len());
    for (i, l) in o.lines.into_iter().enumerate() {
        let at = |f: &str| format!("order.lines[{i}].{f}");
        let line_id = id(&at("line_id"), &l.line_id)?;
        if !seen.insert(line_id.clone()) {
            return Err(Error::invalid(
                at("line_id"),
                format!("duplicate line id {line_id:?}"),
            ));
        }
        let sku = id(&at("sku"), &l.sku)?;
        if l.quantity < 1 {
            return Err(Error::invalid(
                at("quantity"),
                format!("must be at least 1, got {}", l.quantity),
            ));
        }
        if l.quantity > MAX_LINE_QUANTITY {
            return Err(Error::invalid(
                at("quantity"),
                format!("{} is above the limit of {MAX_LINE_QUANTITY}", l.quantity),
            ));
        }
        let group = if l.group.is_empty() {
            None
        } else {
            Some(id(&at("group"), &l.group)?)
        };
        lines.push(OrderLine {
            line_id,
            sku,
            quantity: l.quantity as u64,
            group,
        });
    }
    let delivery = match pb::DeliveryMode::try_from(o.delivery_mode) {
        Ok(pb::DeliveryMode::Unspecified | pb::DeliveryMode::Ship) => {
            if !o.pickup_node_id.is_empty() {
                return Err(Error::invalid(
                    "order.pickup_node_id",
                    "is only for DELIVERY_MODE_PICKUP orders",
                ));
            }
            DeliveryMode::Ship
        }
        Ok(pb::DeliveryMode::Pickup) => DeliveryMode::Pickup {
            node_id: required_id(
                "order.pickup_node_id",
                &o.pickup_node_id,
                "for pickup orders",
            )?,
        },
        Err(_) => {
            return Err(Error::invalid(
                "order.delivery_mode",
                format!("unknown delivery mode {}", o.delivery_mode),
            ));
        }
    };
    let deliver_by = if o.deliver_by.is_empty() {
        None
    } else {
        Some(date("order.deliver_by", &o.deliver_by)?)
    };
    Ok(Order {
        deliver_by,
        order_id,
        segment,
        destination,
        country: dest.country,
        lines,
        delivery,
        ship_complete: o.ship_complete,
    })
}

/// The strategy a request asks for; `None` for the server's default.
pub fn strategy(field: &str, value: i32) -> Result<Option<StrategyKind>, Error> {
    match pb::Strategy::try_from(value) {
        Ok(pb::Strategy::Unspecified) => Ok(None),
        Ok(pb::Strategy::Nearest) => Ok(Some(StrategyKind::Nearest)),
        Ok(pb::Strategy::Priority) => Ok(Some(StrategyKind::Priority)),
        Ok(pb::Strategy::Optimal) => Ok(Some(StrategyKind::Optimal)),
        Err(_) => Err(Error::invalid(field, format!("unknown strategy {value}"))),
    }
}

/// A stock figure's size within [`crate::store::MAX_STOCK_UNITS`].
fn stock_figure(field: &str, value: i64) -> Result<(), String> {
    if value.unsigned_abs() > crate::store::MAX_STOCK_UNITS {
        return Err(format!(
            "{field}: {value} is beyond the limit of {MAX_STOCK} units in size"
        ));
    }
    Ok(())
}

/// A feed update from the wire, or the reason it is rejected; `today` bounds an inbound date.
pub fn stock_update(u: pb::StockUpdate, today: chrono::NaiveDate) -> Result<StockUpdate, String> {
    let node_id = id("node_id", &u.node_id).map_err(|e| e.to_string())?;
    let sku = id("sku", &u.sku).map_err(|e| e.to_string())?;
    if u.sequence == 0 {
        return Err("sequence: must be at least 1".into());
    }
    let kind = match pb::StockUpdateKind::try_from(u.kind) {
        Ok(pb::StockUpdateKind::Snapshot) => {
            if u.quantity < 0 {
                return Err(format!(
                    "quantity: a snapshot's on hand must be 0 or more, got {}",
                    u.quantity
                ));
            }
            stock_figure("quantity", u.quantity)?;
            let safety_stock = match u.safety_stock {
                Some(s) if s < 0 => {
                    return Err(format!("safety_stock: must be 0 or more, got {s}"));
                }
                Some(s) if s > MAX_STOCK => {
                    return Err(format!(
                        "safety_stock: {s} is above the limit of {MAX_STOCK}"
                    ));
                }
                Some(s) => Some(s as u64),
                None => None,
            };
            let reorder_point = match u.reorder_point {
                None => ReorderPoint::Keep,
                Some(-1) => ReorderPoint::Clear,
                Some(r) if r < 0 => {
                    return Err(format!(
                        "reorder_point: must be 0 or more, or -1 to remove it, got {r}"
                    ));
                }
                Some(r) if r > MAX_STOCK => {
                    return Err(format!(
                        "reorder_point: {r} is above the limit of {MAX_STOCK}"
                    ));
                }
                Some(r) => ReorderPoint::Set(r as u64),
            };
            UpdateKind::Snapshot {
                on_hand: u.quantity as u64,
                safety_stock,
                reorder_point,
            }
        }
        Ok(pb::StockUpdateKind::Delta) => {
            stock_figure("quantity", u.quantity)?;
            UpdateKind::Delta { change: u.quantity }
        }
        Ok(pb::StockUpdateKind::Shipment) => {
            if u.quantity < 1 {
                return Err(format!(
                    "quantity: a shipment moves at least 1 unit, got {}",
                    u.quantity
                ));
            }
            stock_figure("quantity", u.quantity)?;
            let order_id =
                required_id("order_id", &u.order_id, "for SHIPMENT").map_err(|e| e.to_string())?;
            UpdateKind::Shipment {
                order_id,
                quantity: u.quantity as u64,
            }
        }
        Ok(pb::StockUpdateKind::Inbound) => {
            if u.quantity < 0 {
                return Err(format!(
                    "quantity: inbound units must be 0 or more (0 removes the receipt), got {}",
                    u.quantity
                ));
            }
            stock_figure("quantity", u.quantity)?;
            if u.expected_date.is_empty() {
                return Err("expected_date: required for INBOUND".into());
            }
            let expected = date("expected_date", &u.expected_date).map_err(|e| e.to_string())?;
            // a receipt removed may be late; one announced must still be to come
            if expected < today && u.quantity > 0 {
                return Err(format!(
                    "expected_date: {expected} is in the past (today is {today})"
                ));
            }
            let reference =
                required_id("reference", &u.reference, "for INBOUND").map_err(|e| e.to_string())?;
            UpdateKind::Inbound {
                units: u.quantity as u64,
                expected,
                reference,
            }
        }
        Ok(pb::StockUpdateKind::Unspecified) => {
            return Err("kind: must be SNAPSHOT, DELTA, SHIPMENT or INBOUND".into());
        }
        Err(_) => return Err(format!("kind: unknown kind {}", u.kind)),
    };
    if !matches!(kind, UpdateKind::Shipment { .. }) && !u.order_id.is_empty() {
        return Err("order_id: is only for SHIPMENT updates".into());
    }
    if !matches!(kind, UpdateKind::Snapshot { .. }) && u.safety_stock.is_some() {
        return Err("safety_stock: is only for SNAPSHOT updates".into());
    }
    if !matches!(kind, UpdateKind::Snapshot { .. }) && u.reorder_point.is_some() {
        return Err("reorder_point: is only for SNAPSHOT updates".into());
    }
    if !matches!(kind, UpdateKind::Inbound { .. })
        && (!u.expected_date.is_empty() || !u.reference.is_empty())
    {
        let field = if u.expected_date.is_empty() {
            "reference"
        } else {
            "expected_date"
        };
        return Err(format!("{field}: is only for INBOUND updates"));
    }
    Ok(StockUpdate {
        node_id,
        sku,
        sequence: u.sequence,
        kind,
    })
}

pub fn node_kind(kind: NodeKind) -> pb::NodeKind {
    match kind {
        NodeKind::Warehouse => pb::NodeKind::Warehouse,
        NodeKind::Store => pb::NodeKind::Store,
        NodeKind::ThirdPartyLogistics => pb::NodeKind::ThirdPartyLogistics,
        NodeKind::Dropship => pb::NodeKind::Dropship,
    }
}

/// The node kind a request filters on; `None` for every kind.
pub fn node_kind_filter(value: i32) -> Result<Option<NodeKind>, Error> {
    match pb::NodeKind::try_from(value) {
        Ok(pb::NodeKind::Unspecified) => Ok(None),
        Ok(pb::NodeKind::Warehouse) => Ok(Some(NodeKind::Warehouse)),
        Ok(pb::NodeKind::Store) => Ok(Some(NodeKind::Store)),
        Ok(pb::NodeKind::ThirdPartyLogistics) => Ok(Some(NodeKind::ThirdPartyLogistics)),
        Ok(pb::NodeKind::Dropship) => Ok(Some(NodeKind::Dropship)),
        Err(_) => Err(Error::invalid("kind", format!("unknown node kind {value}"))),
    }
}

fn node_reason(reason: NodeReason) -> pb::NodeReason {
    match reason {
        NodeReason::NoStock => pb::NodeReason::NoStock,
        NodeReason::ExcludedByRule => pb::NodeReason::ExcludedByRule,
        NodeReason::TooFar => pb::NodeReason::TooFar,
        NodeReason::OverCapacity => pb::NodeReason::OverCapacity,
        NodeReason::Dearer => pb::NodeReason::Dearer,
        NodeReason::NotNeeded => pb::NodeReason::NotNeeded,
        NodeReason::MaxShipments => pb::NodeReason::MaxShipments,
        NodeReason::Disabled => pb::NodeReason::Disabled,
    }
}

fn strategy_out(kind: StrategyKind) -> pb::Strategy {
    match kind {
        StrategyKind::Nearest => pb::Strategy::Nearest,
        StrategyKind::Priority => pb::Strategy::Priority,
        StrategyKind::Optimal => pb::Strategy::Optimal,
    }
}

fn solve_status(s: SolveStatus) -> pb::SolveStatus {
    match s {
        SolveStatus::Optimal => pb::SolveStatus::Optimal,
        SolveStatus::Feasible => pb::SolveStatus::Feasible,
        SolveStatus::ExactFastPath => pb::SolveStatus::ExactFastPath,
        SolveStatus::Heuristic => pb::SolveStatus::Heuristic,
    }
}

pub fn plan(p: &Plan) -> pb::Plan {
    pb::Plan {
        shipments: p
            .shipments
            .iter()
            .map(|s| pb::Shipment {
                node_id: s.node_id.clone(),
                node_kind: node_kind(s.node_kind) as i32,
                lines: s
                    .lines
                    .iter()
                    .map(|l| pb::ShipmentLine {
                        line_id: l.line_id.clone(),
                        sku: l.sku.clone(),
                        quantity: l.quantity as i64,
                    })
                    .collect(),
                cost: s.cost,
                distance_km: s.distance_km,
                estimated_delivery_date: s.estimated_delivery.format("%Y-%m-%d").to_string(),
                days_late: s.days_late as i32,
                transfer: s.transfer,
            })
            .collect(),
        unfilled: p
            .unfilled
            .iter()
            .map(|u| pb::UnfilledLine {
                line_id: u.line_id.clone(),
                sku: u.sku.clone(),
                quantity: u.quantity as i64,
                promised_date: u.promised.map(|d| d.to_string()).unwrap_or_default(),
            })
            .collect(),
        total_cost: p.total_cost,
        shipment_count: p.shipments.len() as i32,
        strategy: strategy_out(p.strategy) as i32,
        unused_nodes: p
            .unused_nodes
            .iter()
            .map(|u| pb::UnusedNode {
                node_id: u.node_id.clone(),
                reason: node_reason(u.reason) as i32,
                detail: u.detail.clone(),
                extra_cost: u.extra_cost,
            })
            .collect(),
        plan_micros: p.plan_micros as i64,
        rules_version: p.rules_version.clone(),
        opportunity_cost: p.opportunity_cost,
        cost: Some(pb::CostBreakdown {
            shipping: p.cost.shipping,
            handling: p.cost.handling,
            parcels: p.cost.parcels,
            transfer: p.cost.transfer,
            split_penalty: p.cost.split_penalty,
            lateness: p.cost.lateness,
            unfilled: p.cost.unfilled,
        }),
        status: solve_status(p.status) as i32,
        binding: p.binding.clone(),
    }
}

fn timestamp(ms: Millis) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn state(s: ReservationState) -> pb::ReservationState {
    match s {
        ReservationState::Held => pb::ReservationState::Held,
        ReservationState::Committed => pb::ReservationState::Committed,
        ReservationState::Released => pb::ReservationState::Released,
        ReservationState::Expired => pb::ReservationState::Expired,
        ReservationState::Fulfilled => pb::ReservationState::Fulfilled,
    }
}

pub fn allocation(a: &Allocation) -> pb::Allocation {
    pb::Allocation {
        line_id: a.line_id.clone(),
        sku: a.sku.clone(),
        node_id: a.node_id.clone(),
        quantity: a.quantity as i64,
        shipped: a.shipped as i64,
        released: a.released as i64,
        rejected: a.rejected as i64,
    }
}

/// A node's level, with its ATS as a segment that may (or may not) use safety stock sees it.
pub fn node_stock(node_id: &str, level: &StockLevel, use_safety_stock: bool) -> pb::NodeStock {
    pb::NodeStock {
        node_id: node_id.to_owned(),
        on_hand: level.on_hand as i64,
        reserved: level.reserved as i64,
        safety_stock: level.safety_stock as i64,
        ats: level.ats(use_safety_stock) as i64,
        last_sequence: level.last_sequence,
        low_stock_threshold: None,
        below_threshold: false,
    }
}

pub fn reservation(r: &Reservation) -> pb::Reservation {
    pb::Reservation {
        order_id: r.order_id.clone(),
        segment: r.segment.clone(),
        state: state(r.state) as i32,
        plan: Some(plan(&r.plan)),
        allocations: r.allocations.iter().map(allocation).collect(),
        created_at: Some(timestamp(r.created_at)),
        expires_at: r.expires_at.map(timestamp),
        history: std::iter::once(first_decision(r))
            .chain(r.history.iter().map(decision))
            .collect(),
        waiting: r
            .waiting
            .iter()
            .map(|w| pb::WaitingLine {
                line_id: w.line_id.clone(),
                sku: w.sku.clone(),
                units: w.units as i64,
                since: Some(timestamp(w.since)),
            })
            .collect(),
    }
}

/// The first decision of a reservation: its plan.
fn first_decision(r: &Reservation) -> pb::Decision {
    let units: u64 = r
        .plan
        .shipments
        .iter()
        .flat_map(|s| &s.lines)
        .map(|l| l.quantity)
        .sum();
    let nodes: Vec<&str> = r
        .plan
        .shipments
        .iter()
        .map(|s| s.node_id.as_str())
        .collect();
    let summary = if nodes.is_empty() {
        "nothing planned".to_owned()
    } else {
        format!("{units} units planned from {}", nodes.join(", "))
    };
    pb::Decision {
        at: Some(timestamp(r.created_at)),
        kind: pb::decision::Kind::Reserved as i32,
        reroute_id: String::new(),
        node_id: String::new(),
        reason: pb::RerouteReason::Unspecified as i32,
        rules_version: r.plan.rules_version.clone(),
        strategy: strategy_out(r.plan.strategy) as i32,
        summary,
        outcomes: Vec::new(),
    }
}

pub fn reroute_reason(reason: RerouteReason) -> pb::RerouteReason {
    match reason {
        RerouteReason::ShortPick => pb::RerouteReason::ShortPick,
        RerouteReason::Damaged => pb::RerouteReason::Damaged,
        RerouteReason::NodeUnavailable => pb::RerouteReason::NodeUnavailable,
        RerouteReason::StoreRejected => pb::RerouteReason::StoreRejected,
        RerouteReason::Other => pb::RerouteReason::Other,
    }
}

pub fn unit_outcome(f: &UnitFate) -> pb::UnitOutcome {
    let (fate, node_id) = match &f.fate {
        Fate::Rerouted { node_id } => (pb::UnitFate::Rerouted, node_id.clone()),
        Fate::Waiting => (pb::UnitFate::Waiting, String::new()),
        Fate::Cancelled => (pb::UnitFate::Cancelled, String::new()),
        Fate::Filled { node_id } => (pb::UnitFate::Filled, node_id.clone()),
    };
    pb::UnitOutcome {
        line_id: f.line_id.clone(),
        sku: f.sku.clone(),
        units: f.units as i64,
        fate: fate as i32,
        node_id,
    }
}

pub fn decision(d: &Decision) -> pb::Decision {
    let (kind, reason) = match d.kind {
        DecisionKind::Reroute => (pb::decision::Kind::Rerouted, reroute_reason(d.reason)),
        DecisionKind::Fill => (pb::decision::Kind::Filled, pb::RerouteReason::Unspecified),
        DecisionKind::Expire => (
            pb::decision::Kind::Cancelled,
            pb::RerouteReason::Unspecified,
        ),
    };
    pb::Decision {
        at: Some(timestamp(d.at)),
        kind: kind as i32,
        reroute_id: d.reroute_id.clone(),
        node_id: d.node_id.clone(),
        reason: reason as i32,
        rules_version: d.rules_version.clone(),
        strategy: strategy_out(d.strategy) as i32,
        summary: d.summary(),
        outcomes: d.fates.iter().map(unit_outcome).collect(),
    }
}

/// A reroute request, every field checked.
pub fn reroute(r: &pb::RerouteRequest) -> Result<RerouteCall, Error> {
    let order_id = id("order_id", &r.order_id)?;
    let node_id = id("node_id", &r.node_id)?;
    let reroute_id = id("reroute_id", &r.reroute_id)?;
    let reason = match pb::RerouteReason::try_from(r.reason) {
        Ok(pb::RerouteReason::ShortPick) => RerouteReason::ShortPick,
        Ok(pb::RerouteReason::Damaged) => RerouteReason::Damaged,
        Ok(pb::RerouteReason::NodeUnavailable) => RerouteReason::NodeUnavailable,
        Ok(pb::RerouteReason::StoreRejected) => RerouteReason::StoreRejected,
        Ok(pb::RerouteReason::Other) => RerouteReason::Other,
        Ok(pb::RerouteReason::Unspecified) => {
            return Err(Error::invalid(
                "reason",
                "must be given: SHORT_PICK, DAMAGED, NODE_UNAVAILABLE, STORE_REJECTED or OTHER",
            ));
        }
        Err(_) => {
            return Err(Error::invalid(
                "reason",
                format!("unknown reason {}", r.reason),
            ));
        }
    };
    let mut lines = Vec::with_capacity(r.lines.len());
    for (i, l) in r.lines.iter().enumerate() {
        let line_id = id(&format!("lines[{i}].line_id"), &l.line_id)?;
        if lines.iter().any(|(seen, _)| seen == &line_id) {
            return Err(Error::invalid(
                format!("lines[{i}].line_id"),
                format!("line {line_id:?} is listed twice"),
            ));
        }
        if l.quantity < 1 || l.quantity as u64 > crate::store::MAX_STOCK_UNITS {
            return Err(Error::invalid(
                format!("lines[{i}].quantity"),
                format!(
                    "{} is out of range: at least 1, at most {}",
                    l.quantity,
                    crate::store::MAX_STOCK_UNITS
                ),
            ));
        }
        lines.push((line_id, l.quantity as u64));
    }
    Ok(RerouteCall {
        order_id,
        node_id,
        lines,
        reason,
        reroute_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> pb::Order {
        pb::Order {
            order_id: "o-1".into(),
            segment: "standard".into(),
            destination: Some(pb::Destination {
                location: Some(pb::GeoPoint {
                    lat: 40.4,
                    lon: -3.7,
                }),
                country: "ES".into(),
            }),
            lines: vec![pb::OrderLine {
                line_id: "1".into(),
                sku: "A".into(),
                quantity: 2,
                group: String::new(),
            }],
            delivery_mode: 0,
            pickup_node_id: String::new(),
            ship_complete: false,
            deliver_by: String::new(),
        }
    }

    fn field_of(o: pb::Order) -> String {
        match order(Some(o), 10).unwrap_err() {
            Error::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_good_order_converts() {
        let o = order(Some(good()), 10).unwrap();
        assert_eq!(o.lines[0].quantity, 2);
        assert_eq!(o.delivery, DeliveryMode::Ship);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut o = good();
        o.order_id = " ".into();
        assert_eq!(field_of(o), "order.order_id");
        let mut o = good();
        o.lines.clear();
        assert_eq!(field_of(o), "order.lines");
        let mut o = good();
        o.lines[0].quantity = 0;
        assert_eq!(field_of(o), "order.lines[0].quantity");
        let mut o = good();
        o.lines[0].quantity = -3;
        assert_eq!(field_of(o), "order.lines[0].quantity");
        let mut o = good();
        o.lines.push(o.lines[0].clone());
        assert_eq!(field_of(o), "order.lines[1].line_id");
        let mut o = good();
        o.destination
            .as_mut()
            .unwrap()
            .location
            .as_mut()
            .unwrap()
            .lat = 100.0;
        assert_eq!(field_of(o), "order.destination.location.lat");
        let mut o = good();
        o.destination.as_mut().unwrap().location = None;
        assert_eq!(field_of(o), "order.destination.location");
        let mut o = good();
        o.destination.as_mut().unwrap().country = "Spain".into();
        assert_eq!(field_of(o), "order.destination.country");
        let mut o = good();
        o.lines = (0..11)
            .map(|i| pb::OrderLine {
                line_id: i.to_string(),
                sku: "A".into(),
                quantity: 1,
                group: String::new(),
            })
            .collect();
        assert_eq!(field_of(o), "order.lines");
        let mut o = good();
        o.delivery_mode = pb::DeliveryMode::Pickup as i32;
        assert_eq!(field_of(o), "order.pickup_node_id");
        let mut o = good();
        o.pickup_node_id = "st-madrid".into();
        assert_eq!(field_of(o), "order.pickup_node_id");
        let mut o = good();
        o.deliver_by = "next week".into();
        assert_eq!(field_of(o), "order.deliver_by");
        let mut o = good();
        o.delivery_mode = 9;
        assert_eq!(field_of(o), "order.delivery_mode");
        assert!(matches!(
            order(None, 10),
            Err(Error::InvalidArgument { .. })
        ));
    }

    fn update(kind: pb::StockUpdateKind, quantity: i64) -> pb::StockUpdate {
        pb::StockUpdate {
            node_id: "n".into(),
            sku: "A".into(),
            kind: kind as i32,
            quantity,
            sequence: 1,
            order_id: String::new(),
            safety_stock: None,
            reorder_point: None,
            expected_date: String::new(),
            reference: String::new(),
        }
    }

    const TODAY: chrono::NaiveDate = chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();

    #[test]
    fn bad_stock_updates_say_why() {
        use pb::StockUpdateKind::*;
        assert!(stock_update(update(Snapshot, 5), TODAY).is_ok());
        assert!(stock_update(update(Delta, -5), TODAY).is_ok());
        assert!(
            stock_update(update(Snapshot, -1), TODAY)
                .unwrap_err()
                .starts_with("quantity")
        );
        assert!(
            stock_update(update(Unspecified, 1), TODAY)
                .unwrap_err()
                .starts_with("kind")
        );
        assert!(
            stock_update(update(Shipment, 1), TODAY)
                .unwrap_err()
                .starts_with("order_id")
        );
        let mut u = update(Snapshot, 1);
        u.sequence = 0;
        assert!(stock_update(u, TODAY).unwrap_err().starts_with("sequence"));
        let mut u = update(Snapshot, 1);
        u.node_id.clear();
        assert!(stock_update(u, TODAY).unwrap_err().starts_with("node_id"));
        let mut u = update(Delta, 1);
        u.safety_stock = Some(2);
        assert!(
            stock_update(u, TODAY)
                .unwrap_err()
                .starts_with("safety_stock")
        );
        let mut u = update(Shipment, 0);
        u.order_id = "o".into();
        assert!(stock_update(u, TODAY).unwrap_err().starts_with("quantity"));
    }

    #[test]
    fn inbound_updates_need_a_date_to_come_and_a_reference() {
        use pb::StockUpdateKind::*;
        let inbound = |quantity, date: &str, reference: &str| {
            let mut u = update(Inbound, quantity);
            u.expected_date = date.into();
            u.reference = reference.into();
            stock_update(u, TODAY)
        };
        let good = inbound(5, "2026-12-20", "PO-1").unwrap();
        assert_eq!(
            good.kind,
            UpdateKind::Inbound {
                units: 5,
                expected: chrono::NaiveDate::from_ymd_opt(2026, 12, 20).unwrap(),
                reference: "PO-1".into(),
            }
        );
        assert!(inbound(5, "2026-12-02", "PO-1").is_ok(), "today is to come");
        // a receipt removed may be late
        assert!(inbound(0, "2026-11-30", "PO-1").is_ok());
        for (u, field, says) in [
            (
                inbound(5, "2026-12-01", "PO-1"),
                "expected_date",
                "in the past",
            ),
            (
                inbound(5, "20-12-2026", "PO-1"),
                "expected_date",
                "YYYY-MM-DD",
            ),
            (inbound(5, "", "PO-1"), "expected_date", "required"),
            (inbound(5, "2026-12-20", ""), "reference", "required"),
            (inbound(-1, "2026-12-20", "PO-1"), "quantity", "0 or more"),
        ] {
            let e = u.unwrap_err();
            assert!(e.starts_with(field) && e.contains(says), "{e}");
        }
        let mut u = update(Delta, 1);
        u.expected_date = "2026-12-20".into();
        assert!(
            stock_update(u, TODAY)
                .unwrap_err()
                .starts_with("expected_date: is only for INBOUND")
        );
        let mut u = update(Snapshot, 1);
        u.reference = "PO-1".into();
        assert!(
            stock_update(u, TODAY)
                .unwrap_err()
                .starts_with("reference: is only for INBOUND")
        );
    }

    #[test]
    fn a_snapshot_sets_keeps_or_removes_the_reorder_point() {
        use pb::StockUpdateKind::*;
        let with = |kind, rp| {
            let mut u = update(kind, 1);
            u.reorder_point = rp;
            stock_update(u, TODAY)
        };
        let point = |u: Result<StockUpdate, String>| match u.unwrap().kind {
            UpdateKind::Snapshot { reorder_point, .. } => reorder_point,
            other => panic!("not a snapshot: {other:?}"),
        };
        assert_eq!(point(with(Snapshot, None)), ReorderPoint::Keep);
        assert_eq!(point(with(Snapshot, Some(0))), ReorderPoint::Set(0));
        assert_eq!(point(with(Snapshot, Some(7))), ReorderPoint::Set(7));
        assert_eq!(point(with(Snapshot, Some(-1))), ReorderPoint::Clear);
        assert_eq!(
            with(Snapshot, Some(-2)).unwrap_err(),
            "reorder_point: must be 0 or more, or -1 to remove it, got -2"
        );
        assert_eq!(
            with(Snapshot, Some(MAX_STOCK + 1)).unwrap_err(),
            format!(
                "reorder_point: {} is above the limit of {MAX_STOCK}",
                MAX_STOCK + 1
            )
        );
        assert_eq!(
            with(Delta, Some(3)).unwrap_err(),
            "reorder_point: is only for SNAPSHOT updates"
        );
    }

    #[test]
    fn timestamps_split_millis() {
        let t = timestamp(1_700_000_000_123);
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_000_000));
    }
}
