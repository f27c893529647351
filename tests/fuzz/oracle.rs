//! What the server must answer a request, judged from the request alone and the answer: the
//! status codes each method may give, bounded messages that name a field, the requests that
//! can only be INVALID_ARGUMENT, and the figures of a sound answer (levels never negative, ATS
//! within on hand, totals the sums of their nodes, plans that account for every unit).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use dom_router::api::pb;
use prost::Message;
use tonic::Code;

use crate::hostile::MAX_STOCK;
use crate::wire::{Call, Method, Reply};

/// The longest status message or rejection reason: input is quoted cut short.
pub const MAX_MESSAGE_BYTES: usize = 1024;
const MAX_ID_BYTES: usize = 128;
const MAX_LINE_QUANTITY: i64 = 1_000_000;
/// The fields a rejected feed update may be blamed on.
const UPDATE_FIELDS: [&str; 10] = [
    "node_id",
    "sku",
    "kind",
    "quantity",
    "sequence",
    "order_id",
    "safety_stock",
    "reorder_point",
    "expected_date",
    "reference",
];

/// The server's limits and network, as the running server has them.
pub struct World {
    pub nodes: HashSet<String>,
    pub pickup_nodes: HashSet<String>,
    pub segments: Vec<String>,
    pub max_lines: usize,
    pub max_updates: usize,
    pub max_skus: usize,
    pub ttl_secs: std::ops::RangeInclusive<u32>,
}

/// What the API takes as an id: not blank, at most 128 bytes, no control characters.
pub fn well_formed(id: &str) -> bool {
    !id.trim().is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
}

/// A value for a failure message: quoted, long ones cut.
pub fn shown(value: &str) -> String {
    match value.char_indices().nth(120) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}...({} bytes)", &value[..cut], value.len()),
    }
}

/// A deliver_by the API must refuse: anything but exactly YYYY-MM-DD, a real date in the years
/// 2000 to 9999.
pub fn bad_date(value: &str) -> bool {
    let b = value.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    !shape
        || chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .map_or(true, |d| chrono::Datelike::year(&d) < 2000)
}

/// Why this request can only be INVALID_ARGUMENT, if it is malformed.
pub fn must_be_invalid(call: &Call, world: &World) -> Option<String> {
    let id = |field: &str, value: &str| {
        (!well_formed(value)).then(|| format!("{field} {} is not an id", shown(value)))
    };
    match call {
        Call::Quote(r) => bad_order(r.order.as_ref(), world)
            .or_else(|| (!(0..=3).contains(&r.strategy)).then(|| "unknown strategy".into())),
        Call::Reserve(r) => bad_order(r.order.as_ref(), world)
            .or_else(|| (!(0..=3).contains(&r.strategy)).then(|| "unknown strategy".into()))
            .or_else(|| {
                (r.hold_ttl_seconds != 0 && !world.ttl_secs.contains(&r.hold_ttl_seconds))
                    .then(|| format!("hold_ttl_seconds {} out of bounds", r.hold_ttl_seconds))
            }),
        Call::Commit(r) => id("order_id", &r.order_id),
        Call::GetReservation(r) => id("order_id", &r.order_id),
        Call::Release(r) => id("order_id", &r.order_id).or_else(|| {
            r.line_ids
                .iter()
                .enumerate()
                .find_map(|(i, l)| id(&format!("line_ids[{i}]"), l))
        }),
        Call::Reroute(r) => reroute_blame(r).map(|(_, why)| why),
        Call::SetStock(r) => (r.updates.len() > world.max_updates)
            .then(|| format!("{} updates in one call", r.updates.len())),
        Call::PushStock(_) => None,
        Call::GetAvailability(r) => {
            if r.skus.is_empty() || r.skus.len() > world.max_skus {
                return Some(format!("{} skus", r.skus.len()));
            }
            if let Some(bad) = r
                .skus
                .iter()
                .enumerate()
                .find_map(|(i, s)| id(&format!("skus[{i}]"), s))
            {
                return Some(bad);
            }
            (!r.segment.is_empty() && !world.segments.contains(&r.segment))
                .then(|| format!("unknown segment {}", shown(&r.segment)))
        }
        Call::ListNodes(r) => (!(0..=4).contains(&r.kind)).then(|| "unknown node kind".into()),
    }
}

fn bad_order(order: Option<&pb::Order>, world: &World) -> Option<String> {
    let Some(o) = order else {
        return Some("no order".into());
    };
    let id = |field: &str, value: &str| {
        (!well_formed(value)).then(|| format!("{field} {} is not an id", shown(value)))
    };
    if let Some(bad) = id("order_id", &o.order_id) {
        return Some(bad);
    }
    if !world.segments.contains(&o.segment) {
        return Some(format!("unknown segment {}", shown(&o.segment)));
    }
    let Some(dest) = &o.destination else {
        return Some("no destination".into());
    };
    let Some(loc) = &dest.location else {
        return Some("no location".into());
    };
    if !loc.lat.is_finite() || !loc.lon.is_finite() || loc.lat.abs() > 90.0 || loc.lon.abs() > 180.0
    {
        return Some(format!("location {} {} off the globe", loc.lat, loc.lon));
    }
    if dest.country.len() != 2 || !dest.country.chars().all(|c| c.is_ascii_uppercase()) {
        return Some(format!("country {}", shown(&dest.country)));
    }
    if o.lines.is_empty() || o.lines.len() > world.max_lines {
        return Some(format!("{} lines", o.lines.len()));
    }
    let mut seen = HashSet::new();
    for (i, l) in o.lines.iter().enumerate() {
        let bad = id(&format!("lines[{i}].line_id"), &l.line_id)
            .or_else(|| (!seen.insert(&l.line_id)).then(|| format!("lines[{i}] repeats its id")))
            .or_else(|| id(&format!("lines[{i}].sku"), &l.sku))
            .or_else(|| {
                (!(1..=MAX_LINE_QUANTITY).contains(&l.quantity))
                    .then(|| format!("lines[{i}].quantity {}", l.quantity))
            })
            .or_else(|| {
                if l.group.is_empty() {
                    None
                } else {
                    id(&format!("lines[{i}].group"), &l.group)
                }
            });
        if bad.is_some() {
            return bad;
        }
    }
    match o.delivery_mode {
        0 | 1 if !o.pickup_node_id.is_empty() => {
            return Some("a pickup store on a shipped order".into());
        }
        0 | 1 => {}
        2 if !well_formed(&o.pickup_node_id) => {
            return Some(format!("pickup at {}", shown(&o.pickup_node_id)));
        }
        2 => {}
        other => return Some(format!("delivery mode {other}")),
    }
    if !o.deliver_by.is_empty() && bad_date(&o.deliver_by) {
        return Some(format!("deliver_by {}", shown(&o.deliver_by)));
    }
    if o.delivery_mode == 2 && !world.pickup_nodes.contains(&o.pickup_node_id) {
        return Some(format!("{NO_PICKUP_STORE} {}", shown(&o.pickup_node_id)));
    }
    None
}

/// The field a reroute's INVALID_ARGUMENT must blame and why, if the request is malformed on
/// the wire: its fields are checked in the order the proto gives them weight (the order, the
/// node, the reroute id, the reason, then each line's id and quantity), so only the first
/// malformed one is named.
fn reroute_blame(r: &pb::RerouteRequest) -> Option<(String, String)> {
    let id = |field: String, value: &str| {
        (!well_formed(value)).then(|| {
            let why = format!("{field} {} is not an id", shown(value));
            (field, why)
        })
    };
    if let Some(bad) = id("order_id".into(), &r.order_id)
        .or_else(|| id("node_id".into(), &r.node_id))
        .or_else(|| id("reroute_id".into(), &r.reroute_id))
    {
        return Some(bad);
    }
    if !(1..=5).contains(&r.reason) {
        return Some(("reason".into(), format!("reason {}", r.reason)));
    }
    let mut seen = HashSet::new();
    r.lines.iter().enumerate().find_map(|(i, l)| {
        let field = format!("lines[{i}].line_id");
        id(field.clone(), &l.line_id)
            .or_else(|| {
                (!seen.insert(&l.line_id)).then(|| (field, format!("lines[{i}] repeats its id")))
            })
            .or_else(|| {
                (!(1..=MAX_STOCK).contains(&l.quantity)).then(|| {
                    (
                        format!("lines[{i}].quantity"),
                        format!("lines[{i}].quantity {}", l.quantity),
                    )
                })
            })
    })
}

/// A reroute refused as INVALID_ARGUMENT blames the first field malformed on the wire, or,
/// when there is none, a line the order lacks (the one thing found against the order).
fn check_reroute_blame(r: &pb::RerouteRequest, message: &str) -> Result<(), String> {
    let path = message.split(':').next().unwrap_or_default();
    match reroute_blame(r) {
        Some((field, _)) if path == field => Ok(()),
        Some((field, why)) => Err(format!(
            "InvalidArgument blames {}, where the first malformed field is {field} ({why})",
            shown(path)
        )),
        None if (0..r.lines.len()).any(|i| path == format!("lines[{i}].line_id")) => Ok(()),
        None => Err(format!(
            "InvalidArgument for a reroute well formed on the wire, blaming {}, not a line",
            shown(path)
        )),
    }
}

/// The one malformation found against the network rather than by shape. It is found when the
/// order is admitted, before a Reserve looks the order id up, so it is INVALID_ARGUMENT even
/// for an order id reserved before with other contents.
const NO_PICKUP_STORE: &str = "no pickup store";

/// Why a feed update must be listed as rejected, if it must.
pub fn must_reject(u: &pb::StockUpdate, world: &World) -> Option<String> {
    let bound = |field: &str, v: i64| {
        (v.unsigned_abs() > MAX_STOCK as u64).then(|| format!("{field} {v} beyond 10^12"))
    };
    if !well_formed(&u.node_id) || !world.nodes.contains(&u.node_id) {
        return Some(format!("node_id {}", shown(&u.node_id)));
    }
    if !well_formed(&u.sku) {
        return Some(format!("sku {}", shown(&u.sku)));
    }
    if u.sequence == 0 {
        return Some("sequence 0".into());
    }
    let shipment = u.kind == pb::StockUpdateKind::Shipment as i32;
    let snapshot = u.kind == pb::StockUpdateKind::Snapshot as i32;
    if !(1..=4).contains(&u.kind) {
        return Some(format!("kind {}", u.kind));
    }
    let inbound = u.kind == pb::StockUpdateKind::Inbound as i32;
    if inbound {
        if u.quantity < 0 {
            return Some(format!("inbound of {}", u.quantity));
        }
        // the harness's day
        let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let date = chrono::NaiveDate::parse_from_str(&u.expected_date, "%Y-%m-%d")
            .ok()
            .filter(|_| u.expected_date.len() == 10);
        match date {
            None => return Some(format!("inbound on {}", shown(&u.expected_date))),
            Some(d) if d < today && u.quantity > 0 => {
                return Some(format!("inbound on {d}, in the past"));
            }
            _ => {}
        }
        if !well_formed(&u.reference) {
            return Some(format!("inbound reference {}", shown(&u.reference)));
        }
    } else if !u.expected_date.is_empty() || !u.reference.is_empty() {
        return Some("expected_date or reference on an update not inbound".into());
    }
    if snapshot && u.quantity < 0 {
        return Some(format!("snapshot of {}", u.quantity));
    }
    if shipment && u.quantity < 1 {
        return Some(format!("shipment of {}", u.quantity));
    }
    if shipment && !well_formed(&u.order_id) {
        return Some(format!("shipment of order {}", shown(&u.order_id)));
    }
    if !shipment && !u.order_id.is_empty() {
        return Some("order_id on an update that is not a shipment".into());
    }
    match u.safety_stock {
        Some(_) if !snapshot => return Some("safety_stock on an update not a snapshot".into()),
        Some(s) if s < 0 => return Some(format!("safety_stock {s}")),
        Some(s) if s > MAX_STOCK => return Some(format!("safety_stock {s} beyond 10^12")),
        _ => {}
    }
    match u.reorder_point {
        Some(_) if !snapshot => return Some("reorder_point on an update not a snapshot".into()),
        Some(r) if r < -1 => return Some(format!("reorder_point {r}")),
        Some(r) if r > MAX_STOCK => return Some(format!("reorder_point {r} beyond 10^12")),
        _ => {}
    }
    bound("quantity", u.quantity)
}

/// The codes a method may answer a well-formed or malformed request with; anything else
/// (INTERNAL, UNKNOWN, UNAVAILABLE, RESOURCE_EXHAUSTED...) is the server's fault.
fn allowed(method: Method) -> &'static [Code] {
    use Code::*;
    match method {
        Method::Quote => &[InvalidArgument, FailedPrecondition],
        Method::Reserve => &[InvalidArgument, FailedPrecondition, AlreadyExists, Aborted],
        Method::Commit | Method::Release => &[InvalidArgument, NotFound, FailedPrecondition],
        // no ABORTED: it answers a reroute that kept meeting changes made by other calls, and
        // the harness sends one request at a time
        Method::Reroute => &[InvalidArgument, NotFound, FailedPrecondition, AlreadyExists],
        Method::GetReservation => &[InvalidArgument, NotFound],
        Method::SetStock | Method::PushStock | Method::GetAvailability | Method::ListNodes => {
            &[InvalidArgument]
        }
    }
}

/// Whether a status message starts by naming a field of the request, as
/// `order.lines[2].sku: ...` does.
fn names_field(message: &str, method: Method) -> bool {
    let Some((path, _)) = message.split_once(':') else {
        return false;
    };
    let root = path.split(['.', '[']).next().unwrap_or_default();
    let shape = path
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.[]".contains(c));
    shape && method.fields().contains(&root)
}

/// Checks the answer to one request. `call` is the request as the server decodes it, `None`
/// when it cannot be decoded.
pub fn check_reply(
    method: Method,
    call: Option<&Call>,
    reply: &Reply,
    world: &World,
) -> Result<(), String> {
    let invalid = call.and_then(|c| must_be_invalid(c, world));
    match reply {
        Err(status) => {
            let code = status.code();
            let message = status.message();
            if message.len() > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "{code:?} with a message of {} bytes, over {MAX_MESSAGE_BYTES}: {}",
                    message.len(),
                    shown(message)
                ));
            }
            let Some(call) = call else {
                return if code == Code::InvalidArgument {
                    Ok(())
                } else {
                    Err(format!(
                        "an undecodable request answered {code:?} ({}), not InvalidArgument",
                        shown(message)
                    ))
                };
            };
            if let Some(why) = &invalid
                && code != Code::InvalidArgument
            {
                return Err(format!(
                    "{code:?} ({}) for a request that is malformed: {why}",
                    shown(message)
                ));
            }
            if !allowed(method).contains(&code) {
                return Err(format!(
                    "{code:?} is not an answer {method:?} may give: {}",
                    shown(message)
                ));
            }
            if code == Code::InvalidArgument && !names_field(message, method) {
                return Err(format!(
                    "InvalidArgument whose message does not start with a field of the \
                     request: {}",
                    shown(message)
                ));
            }
            if code == Code::InvalidArgument
                && let Call::Reroute(r) = call
            {
                check_reroute_blame(r, message)?;
            }
            if code == Code::NotFound
                && let Some(bad) = call.order_ids().into_iter().find(|id| !well_formed(id))
            {
                return Err(format!(
                    "NotFound for order id {}, which is no id at all",
                    shown(bad)
                ));
            }
            Ok(())
        }
        Ok(bytes) => {
            if call.is_none() {
                return Err("an undecodable request was answered OK".into());
            }
            let call = call.unwrap();
            if let Some(why) = invalid {
                return Err(format!("OK for a request that is malformed: {why}"));
            }
            check_answer(call, bytes, world)
        }
    }
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, String> {
    M::decode(bytes).map_err(|e| format!("the answer does not decode: {e}"))
}

fn check_answer(call: &Call, bytes: &[u8], world: &World) -> Result<(), String> {
    match call {
        Call::Quote(r) => {
            let plan = decode::<pb::QuoteResponse>(bytes)?
                .plan
                .ok_or("a quote without a plan")?;
            check_plan(r.order.as_ref().unwrap(), &plan, world)
        }
        Call::Reserve(r) => {
            let a = decode::<pb::ReserveResponse>(bytes)?;
            let res = a.reservation.ok_or("a reserve without a reservation")?;
            let order = r.order.as_ref().unwrap();
            if res.order_id != order.order_id {
                return Err(format!("reserved {} instead", shown(&res.order_id)));
            }
            check_reservation(&res, world)?;
            let plan = res.plan.as_ref().ok_or("a reservation without a plan")?;
            check_plan(order, plan, world)?;
            let mut held: HashMap<&str, i64> = HashMap::new();
            for a in &res.allocations {
                *held.entry(&a.line_id).or_default() += a.quantity;
            }
            for l in &order.lines {
                let h = held.remove(l.line_id.as_str()).unwrap_or(0);
                if h > l.quantity {
                    return Err(format!(
                        "{h} units held for line {} of {}",
                        l.line_id, l.quantity
                    ));
                }
            }
            match held.into_keys().next() {
                Some(extra) => Err(format!("units held for a line {extra} the order lacks")),
                None => Ok(()),
            }
        }
        Call::Commit(r) => {
            let res = decode::<pb::CommitResponse>(bytes)?
                .reservation
                .ok_or("a commit without a reservation")?;
            same_order(&r.order_id, &res)?;
            check_reservation(&res, world)
        }
        Call::Release(r) => {
            let res = decode::<pb::ReleaseResponse>(bytes)?
                .reservation
                .ok_or("a release without a reservation")?;
            same_order(&r.order_id, &res)?;
            check_reservation(&res, world)
        }
        Call::Reroute(r) => {
            let a = decode::<pb::RerouteResponse>(bytes)?;
            let res = a
                .reservation
                .as_ref()
                .ok_or("a reroute without a reservation")?;
            same_order(&r.order_id, res)?;
            check_reservation(res, world)?;
            check_rerouted(r, &a, world)
        }
        Call::GetReservation(r) => {
            let res = decode::<pb::GetReservationResponse>(bytes)?
                .reservation
                .ok_or("no reservation in the answer")?;
            same_order(&r.order_id, &res)?;
            check_reservation(&res, world)
        }
        Call::SetStock(_) | Call::PushStock(_) => {
            check_summary(call.updates(), &decode(bytes)?, world)
        }
        Call::GetAvailability(r) => {
            let segment = (!r.segment.is_empty()).then_some(r.segment.as_str());
            check_availability(&r.skus, segment, &decode(bytes)?, world)
        }
        Call::ListNodes(r) => {
            let a = decode::<pb::ListNodesResponse>(bytes)?;
            if let Some(n) = a.nodes.iter().find(|n| r.kind != 0 && n.kind != r.kind) {
                return Err(format!("node {} is not of kind {}", n.node_id, r.kind));
            }
            if r.kind == 0 && a.nodes.len() != world.nodes.len() {
                return Err(format!("{} nodes listed", a.nodes.len()));
            }
            Ok(())
        }
    }
}

fn same_order(order_id: &str, r: &pb::Reservation) -> Result<(), String> {
    if r.order_id == order_id {
        Ok(())
    } else {
        Err(format!(
            "asked for {}, answered {}",
            shown(order_id),
            shown(&r.order_id)
        ))
    }
}

/// Allocations account for their units: nothing negative, shipped and released within what
/// was allocated, at real nodes. An allocation whose every unit a reroute moved off its node
/// stays, with no units and the rejected ones.
pub fn check_reservation(r: &pb::Reservation, world: &World) -> Result<(), String> {
    for a in &r.allocations {
        if a.quantity < 0
            || a.rejected < 0
            || (a.quantity == 0 && a.rejected == 0)
            || a.shipped < 0
            || a.released < 0
            || a.shipped + a.released > a.quantity
        {
            return Err(format!("allocation out of balance: {a:?}"));
        }
        if !world.nodes.contains(&a.node_id) {
            return Err(format!("allocation at unknown node {}", shown(&a.node_id)));
        }
    }
    Ok(())
}

/// A reroute's answer accounts for the units moved: each has one fate (another node, waiting
/// or cancelled), as many units of each line as the request names (some if it names none),
/// planned exactly as the outcomes say, and the reservation's history has the decision, for
/// this node and reason, with these outcomes.
fn check_rerouted(
    r: &pb::RerouteRequest,
    a: &pb::RerouteResponse,
    world: &World,
) -> Result<(), String> {
    let res = a.reservation.as_ref().ok_or("no reservation")?;
    if a.outcomes.is_empty() {
        return Err("a reroute that moved no units".into());
    }
    let mut per_line: BTreeMap<&str, i64> = BTreeMap::new();
    // units of each line at each node, and units of each line unfilled
    let mut rerouted: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut unfilled: BTreeMap<&str, i64> = BTreeMap::new();
    for o in &a.outcomes {
        if o.units < 1 {
            return Err(format!("an outcome of {} units: {o:?}", o.units));
        }
        *per_line.entry(&o.line_id).or_default() += o.units;
        match pb::UnitFate::try_from(o.fate) {
            Ok(pb::UnitFate::Rerouted) => {
                if !world.nodes.contains(&o.node_id) || o.node_id == r.node_id {
                    return Err(format!(
                        "units rerouted to {}, unknown or the node that could not ship them",
                        shown(&o.node_id)
                    ));
                }
                *rerouted.entry((&o.line_id, &o.node_id)).or_default() += o.units;
            }
            Ok(pb::UnitFate::Waiting | pb::UnitFate::Cancelled) if o.node_id.is_empty() => {
                *unfilled.entry(&o.line_id).or_default() += o.units;
            }
            _ => return Err(format!("an outcome of no sound fate: {o:?}")),
        }
    }
    if !r.lines.is_empty() {
        let asked: BTreeMap<&str, i64> = r
            .lines
            .iter()
            .map(|l| (l.line_id.as_str(), l.quantity))
            .collect();
        if asked != per_line {
            return Err(format!(
                "units asked to move per line {asked:?}, moved {per_line:?}"
            ));
        }
    }
    let plan = a.plan.as_ref().ok_or("a reroute without a plan")?;
    let mut shipped: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for s in &plan.shipments {
        if !s.cost.is_finite() || s.cost < 0.0 {
            return Err(format!("a shipment costing {}", s.cost));
        }
        for l in s.lines.iter().filter(|l| l.quantity != 0) {
            *shipped.entry((&l.line_id, &s.node_id)).or_default() += l.quantity;
        }
    }
    let mut left: BTreeMap<&str, i64> = BTreeMap::new();
    for u in plan.unfilled.iter().filter(|u| u.quantity != 0) {
        *left.entry(&u.line_id).or_default() += u.quantity;
    }
    if shipped != rerouted || left != unfilled {
        return Err(format!(
            "the plan ships {shipped:?} and leaves {left:?}, the outcomes reroute {rerouted:?} \
             and leave {unfilled:?}"
        ));
    }
    let decision = res
        .history
        .iter()
        .find(|d| d.reroute_id == r.reroute_id)
        .ok_or("the reservation's history lacks the reroute")?;
    if decision.kind != pb::decision::Kind::Rerouted as i32
        || decision.node_id != r.node_id
        || decision.reason != r.reason
        || decision.outcomes != a.outcomes
    {
        return Err(format!(
            "the history has the reroute as {}",
            brief(&format!("{decision:?}"))
        ));
    }
    Ok(())
}

/// A plan ships or leaves unfilled every unit ordered, exactly, from real nodes, at a finite
/// cost.
fn check_plan(order: &pb::Order, plan: &pb::Plan, world: &World) -> Result<(), String> {
    let mut units: HashMap<&str, i64> = HashMap::new();
    for s in &plan.shipments {
        if !world.nodes.contains(&s.node_id) {
            return Err(format!(
                "a shipment from unknown node {}",
                shown(&s.node_id)
            ));
        }
        if !s.cost.is_finite() || s.cost < 0.0 || !s.distance_km.is_finite() {
            return Err(format!(
                "a shipment with cost {} and distance {}",
                s.cost, s.distance_km
            ));
        }
        for l in &s.lines {
            if l.quantity < 1 {
                return Err(format!("a shipment of {} units", l.quantity));
            }
            *units.entry(&l.line_id).or_default() += l.quantity;
        }
    }
    for u in &plan.unfilled {
        *units.entry(&u.line_id).or_default() += u.quantity;
    }
    if !plan.total_cost.is_finite() || plan.total_cost < 0.0 {
        return Err(format!("a plan costing {}", plan.total_cost));
    }
    for l in &order.lines {
        let planned = units.remove(l.line_id.as_str()).unwrap_or(0);
        if planned != l.quantity {
            return Err(format!(
                "line {} of {} units: {planned} shipped or unfilled",
                shown(&l.line_id),
                l.quantity
            ));
        }
    }
    match units.into_keys().next() {
        Some(extra) => Err(format!("a plan for line {} the order lacks", shown(extra))),
        None => Ok(()),
    }
}

/// A feed's summary counts every update once and lists the rejected ones, each blamed on a
/// field, among them every update that is malformed.
fn check_summary(
    updates: &[pb::StockUpdate],
    s: &pb::PushStockResponse,
    world: &World,
) -> Result<(), String> {
    let n = updates.len() as u64;
    if s.applied + s.stale + s.rejected != n {
        return Err(format!(
            "{n} updates, but {} applied, {} stale, {} rejected",
            s.applied, s.stale, s.rejected
        ));
    }
    if s.rejections.len() as u64 != s.rejected.min(1000) {
        return Err(format!(
            "{} rejected, {} listed",
            s.rejected,
            s.rejections.len()
        ));
    }
    let mut listed = HashSet::new();
    let mut last = None;
    for r in &s.rejections {
        if r.index >= n || last.is_some_and(|l| l >= r.index) {
            return Err(format!("rejection index {} out of order or range", r.index));
        }
        last = Some(r.index);
        listed.insert(r.index);
        let u = &updates[r.index as usize];
        // ids come back whole up to the id limit, cut there beyond it
        let echoes = |echo: &str, sent: &str| {
            echo.len() <= MAX_ID_BYTES
                && sent.starts_with(echo)
                && (echo == sent || echo.len() > MAX_ID_BYTES - 4)
        };
        if !echoes(&r.node_id, &u.node_id) || !echoes(&r.sku, &u.sku) || r.sequence != u.sequence {
            return Err(format!("rejection {} names another update", r.index));
        }
        if r.reason.len() > MAX_MESSAGE_BYTES {
            return Err(format!("a rejection reason of {} bytes", r.reason.len()));
        }
        let field = r.reason.split(':').next().unwrap_or_default();
        if !UPDATE_FIELDS.contains(&field) || !r.reason.contains(':') {
            return Err(format!(
                "rejection reason does not start with a field: {}",
                shown(&r.reason)
            ));
        }
    }
    if s.rejected <= 1000 {
        for (i, u) in updates.iter().enumerate() {
            if let Some(why) = must_reject(u, world)
                && !listed.contains(&(i as u64))
            {
                return Err(format!("update {i} taken, though malformed: {why}"));
            }
        }
    }
    Ok(())
}

/// Stock as read is sound: no figure negative or beyond the bound, ATS within what on hand
/// less reserved leaves, and every sku's totals the sums over its nodes.
pub fn check_availability(
    skus: &[String],
    segment: Option<&str>,
    a: &pb::GetAvailabilityResponse,
    world: &World,
) -> Result<(), String> {
    let names: Vec<&str> = a.skus.iter().map(|s| s.sku.as_str()).collect();
    if names.len() != skus.len() || names.iter().zip(skus).any(|(a, b)| a != b) {
        return Err(format!(
            "asked for {} skus, answered {}",
            skus.len(),
            names.len()
        ));
    }
    let within = |v: i64| (0..=MAX_STOCK).contains(&v);
    for s in &a.skus {
        let at = |what: String| format!("{} (segment {segment:?}): {what}", shown(&s.sku));
        let mut sums = [0i128; 4];
        let mut seen = HashSet::new();
        for n in &s.nodes {
            if !seen.insert(&n.node_id) || !world.nodes.contains(&n.node_id) {
                return Err(at(format!("node {} unknown or listed twice", n.node_id)));
            }
            if n.on_hand < 0 || n.safety_stock < 0 || n.reserved < 0 || n.ats < 0 {
                return Err(at(format!("at {}: a negative figure: {n:?}", n.node_id)));
            }
            if !within(n.on_hand) || !within(n.safety_stock) {
                return Err(at(format!(
                    "at {}: a figure beyond 10^12: {n:?}",
                    n.node_id
                )));
            }
            if n.ats > n.on_hand
                || i128::from(n.ats) > (i128::from(n.on_hand) - i128::from(n.reserved)).max(0)
            {
                return Err(at(format!(
                    "at {}: ATS above on hand less reserved: {n:?}",
                    n.node_id
                )));
            }
            for (sum, v) in sums
                .iter_mut()
                .zip([n.on_hand, n.reserved, n.safety_stock, n.ats])
            {
                *sum += i128::from(v);
            }
        }
        let totals = [s.on_hand, s.reserved, s.safety_stock, s.ats].map(i128::from);
        if totals != sums {
            return Err(at(format!(
                "totals (on hand, reserved, safety, ATS) {totals:?} are not the sums of its nodes {sums:?}"
            )));
        }
    }
    Ok(())
}

/// Long strings in a value's Debug text cut short, so a failing case stays readable.
pub fn brief(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let mut run = 1;
        while chars.peek() == Some(&c) {
            chars.next();
            run += 1;
        }
        if run > 12 {
            out.push_str(&format!("{c}{c}{c}…×{run}"));
        } else {
            out.extend(std::iter::repeat_n(c, run));
        }
    }
    out
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn cut<T>(items: &mut Vec<T>) -> String {
            if items.len() > 6 {
                let n = items.len();
                items.truncate(3);
                format!(" (+{} more, {n} in all)", n - 3)
            } else {
                String::new()
            }
        }
        let mut call = self.clone();
        let note = match &mut call {
            Call::Quote(r) => r
                .order
                .as_mut()
                .map(|o| cut(&mut o.lines))
                .unwrap_or_default(),
            Call::Reserve(r) => r
                .order
                .as_mut()
                .map(|o| cut(&mut o.lines))
                .unwrap_or_default(),
            Call::SetStock(r) => cut(&mut r.updates),
            Call::PushStock(u) => cut(u),
            Call::GetAvailability(r) => cut(&mut r.skus),
            Call::Release(r) => cut(&mut r.line_ids),
            Call::Reroute(r) => cut(&mut r.lines),
            _ => String::new(),
        };
        let text = match &call {
            Call::Quote(r) => format!("Quote({r:?})"),
            Call::Reserve(r) => format!("Reserve({r:?})"),
            Call::Commit(r) => format!("Commit({r:?})"),
            Call::Release(r) => format!("Release({r:?})"),
            Call::Reroute(r) => format!("Reroute({r:?})"),
            Call::GetReservation(r) => format!("GetReservation({r:?})"),
            Call::SetStock(r) => format!("SetStock({r:?})"),
            Call::PushStock(u) => format!("PushStock({u:?})"),
            Call::GetAvailability(r) => format!("GetAvailability({r:?})"),
            Call::ListNodes(r) => format!("ListNodes({r:?})"),
        };
        write!(f, "{}{note}", brief(&text))
    }
}
