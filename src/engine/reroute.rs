//! Reroute: a node cannot ship units it was given; they are planned again elsewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tracing::{Instrument, debug, info_span, warn};

use super::Engine;
use crate::clock::Millis;
use crate::domain::{Order, OrderLine, Plan, UnfilledPolicy};
use crate::error::Error;
use crate::sourcing::Admitted;
use crate::store::{
    Allocation, Decision, DecisionKind, Fate, Gone, RerouteHold, RerouteOutcome, RerouteReason,
    Reservation, ReservationState, StoreError, UnitFate, WaitingEntry, WaitingUnits,
};

/// A reroute as a node asks for it, its fields well formed.
#[derive(Debug, Clone, PartialEq)]
pub struct RerouteCall {
    pub order_id: String,
    pub node_id: String,
    /// Units per line; empty: every unit of the order outstanding at the node.
    pub lines: Vec<(String, u64)>,
    pub reason: RerouteReason,
    pub reroute_id: String,
}

impl RerouteCall {
    /// A digest of what the call asks, to tell a repeat from a different call under its id.
    pub fn digest(&self) -> String {
        let mut lines = self.lines.clone();
        lines.sort();
        let canonical = serde_json::json!({
            "order_id": self.order_id,
            "node_id": self.node_id,
            "lines": lines,
            "reason": self.reason,
        });
        format!(
            "{:016x}",
            crate::domain::fnv1a64(canonical.to_string().as_bytes())
        )
    }
}

/// What a reroute answers: the reservation after it, and its decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Rerouted {
    pub reservation: Reservation,
    pub decision: Decision,
    /// False when a reroute made before under the same id is answered.
    pub rerouted: bool,
}

impl Engine {
    /// Plans again the units a node cannot ship and moves them, all or nothing (see the
    /// `Reroute` call in the proto).
    pub async fn reroute(&self, call: &RerouteCall) -> Result<Rerouted, Error> {
        let digest = call.digest();
        let attempts = self.settings.sourcing.reserve_attempts;
        for attempt in 1..=attempts {
            let now = self.clock.now_millis();
            let r = self.reservation(&call.order_id).await?;
            if let Some(answer) = answered_before(&r, call, &digest)? {
                return Ok(answer);
            }
            let (hold, decision) = self.plan_reroute(call, &r, &digest, now).await?;
            if !hold.waiting.is_empty() {
                // the index of waiting lines lists them before the reservation says they wait
                let all = [r.waiting.clone(), hold.waiting.clone()].concat();
                let entries = WaitingEntry::of(&r.order_id, &r.segment, &all);
                self.store.note_waiting(&entries).await?;
            }
            let outcome = self.apply_reroute(&hold, now, "reroute").await?;
            match outcome {
                RerouteOutcome::Done(reservation) => {
                    if !reservation.waiting.is_empty() {
                        // noted again once written: a filler may have dropped the first note
                        // while the reroute was being written
                        let entries = WaitingEntry::of(
                            &reservation.order_id,
                            &reservation.segment,
                            &reservation.waiting,
                        );
                        if let Err(e) = self.store.note_waiting(&entries).await {
                            warn!(order_id = %call.order_id, error = %e, "waiting lines not noted again");
                        }
                    }
                    crate::metrics::rerouted(call.reason, &decision.fates);
                    return Ok(Rerouted {
                        reservation,
                        decision,
                        rerouted: true,
                    });
                }
                RerouteOutcome::Repeat(r) => {
                    if let Some(answer) = answered_before(&r, call, &digest)? {
                        return Ok(answer);
                    }
                }
                RerouteOutcome::Changed | RerouteOutcome::Busy => {
                    debug!(order_id = %call.order_id, attempt, "the order changed under the reroute; planning again");
                }
                RerouteOutcome::Insufficient {
                    sku,
                    node_id,
                    wanted,
                    available,
                } => {
                    debug!(
                        order_id = %call.order_id, attempt, %sku, %node_id, wanted, available,
                        "stock moved under the reroute; planning again"
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
        }
        Err(Error::Aborted(format!(
            "order {:?}: the stock or the order kept changing under the reroute; gave up after {attempts} attempts",
            call.order_id
        )))
    }

    /// The reroute of `r` that `call` asks for, planned against stock now, and its decision.
    async fn plan_reroute(
        &self,
        call: &RerouteCall,
        r: &Reservation,
        digest: &str,
        now: Millis,
    ) -> Result<(RerouteHold, Decision), Error> {
        if !matches!(
            r.state,
            ReservationState::Held | ReservationState::Committed
        ) {
            return Err(Error::FailedPrecondition(format!(
                "order {:?} is {}; only a held or committed order is rerouted",
                r.order_id,
                r.state.as_str()
            )));
        }
        let Some(order) = &r.order else {
            return Err(Error::FailedPrecondition(format!(
                "order {:?} was reserved before reservations kept their order, so it cannot be planned again; release it and reserve it anew",
                r.order_id
            )));
        };
        let gone = gone_units(call, r, order)?;
        let rules = self.rules();
        let segment = segment_of(&rules, r)?;
        let kind = r.plan.strategy;
        let plan = self
            .plan_again(&rules, r, order, &gone, Some(&call.node_id), now)
            .await?;
        let new = Allocation::of_plan(&plan);
        let mut fates: Vec<UnitFate> = new
            .iter()
            .map(|a| UnitFate {
                line_id: a.line_id.clone(),
                sku: a.sku.clone(),
                units: a.quantity,
                fate: Fate::Rerouted {
                    node_id: a.node_id.clone(),
                },
            })
            .collect();
        let waits = segment.unfilled == UnfilledPolicy::Backorder;
        let waiting = if waits {
            WaitingUnits::of_plan(&plan, now)
        } else {
            Vec::new()
        };
        let mut cancelled = 0;
        for u in plan.unfilled.iter().filter(|u| u.quantity > 0) {
            fates.push(UnitFate {
                line_id: u.line_id.clone(),
                sku: u.sku.clone(),
                units: u.quantity,
                fate: if waits {
                    Fate::Waiting
                } else {
                    Fate::Cancelled
                },
            });
            if !waits {
                cancelled += u.quantity;
            }
        }
        let decision = Decision {
            at: now,
            reroute_id: call.reroute_id.clone(),
            digest: digest.to_owned(),
            kind: DecisionKind::Reroute,
            node_id: call.node_id.clone(),
            reason: call.reason,
            rules_version: rules.version.clone(),
            strategy: kind,
            fates,
            plan,
            waited_ms: 0,
        };
        let hold = RerouteHold {
            order_id: r.order_id.clone(),
            node_id: call.node_id.clone(),
            removes_stock: call.reason.removes_stock(),
            gone,
            new,
            waiting,
            from_waiting: Vec::new(),
            use_safety_stock: segment.use_safety_stock,
            closed: segment.closed(),
            decision: decision.clone(),
            cancelled,
        };
        Ok((hold, decision))
    }
}

impl Engine {
    /// Applies a reroute (or a fill) in the store, waiting for a release or another reroute of
    /// the order under way like for a reserve in flight.
    pub(super) async fn apply_reroute(
        &self,
        hold: &RerouteHold,
        now: Millis,
        op: &'static str,
    ) -> Result<RerouteOutcome, StoreError> {
        self.after_in_flight(|at| async move {
            match self.store.reroute(hold.clone(), at.max(now)).await {
                Ok(RerouteOutcome::Busy) => Err(StoreError::InFlight(hold.order_id.clone())),
                other => other,
            }
        })
        .instrument(info_span!("store", op))
        .await
    }

    /// Plans again `units` of order `r` (a reroute's units leaving `leaving`, or units waiting
    /// for supply) by the order's strategy under its segment's rules now: never from `leaving`
    /// or a node that turned the order down before, with at most the parcels the segment
    /// allows less those still active, and what no node can ship left unfilled (an order
    /// cannot be refused after the fact).
    pub(super) async fn plan_again(
        &self,
        rules: &std::sync::Arc<crate::domain::Rules>,
        r: &Reservation,
        order: &Order,
        units: &[Gone],
        leaving: Option<&str>,
        now: Millis,
    ) -> Result<Plan, Error> {
        let segment = segment_of(rules, r)?;
        let mut rules_now = segment.clone();
        rules_now.excluded_nodes.extend(leaving.map(str::to_owned));
        rules_now.excluded_nodes.extend(
            r.history
                .iter()
                .filter(|d| d.kind == DecisionKind::Reroute)
                .map(|d| d.node_id.clone()),
        );
        let leaving_units: &[Gone] = if leaving.is_some() { units } else { &[] };
        let active = active_parcels(&r.allocations, leaving.unwrap_or(""), leaving_units);
        let parcels_left = segment.max_shipments.saturating_sub(active);
        rules_now.max_shipments = parcels_left;
        if rules_now.unfilled == UnfilledPolicy::Reject {
            rules_now.unfilled = UnfilledPolicy::Partial;
        }
        let group_of: BTreeMap<&str, Option<String>> = order
            .lines
            .iter()
            .map(|l| (l.line_id.as_str(), l.group.clone()))
            .collect();
        let moved = Order {
            lines: units
                .iter()
                .map(|g| OrderLine {
                    line_id: g.line_id.clone(),
                    sku: g.sku.clone(),
                    quantity: g.units,
                    group: group_of.get(g.line_id.as_str()).cloned().flatten(),
                })
                .collect(),
            ..order.clone()
        };
        let kind = r.plan.strategy;
        Ok(match Admitted::under(&moved, &rules_now, &rules.network) {
            Ok(admitted) if parcels_left > 0 => {
                // the units count against the capacity of the order's day, as its others do
                let state = self
                    .store
                    .read_state(&moved.skus(), r.capacity_day, now)
                    .instrument(info_span!("store", op = "read_state"))
                    .await?;
                self.plan(rules, &admitted, kind, state).await?
            }
            Ok(_) => nothing_planned(
                &moved,
                kind,
                &rules.version,
                format!(
                    "no parcel left: {active} shipments, the most segment {} allows, are still active",
                    segment.name
                ),
            ),
            // the pickup store itself is closed to the order now
            Err(Error::Refused(refusal)) => {
                nothing_planned(&moved, kind, &rules.version, refusal.to_string())
            }
            Err(e) => return Err(e),
        })
    }
}

/// The rules of the order's segment in force now.
pub(super) fn segment_of<'a>(
    rules: &'a crate::domain::Rules,
    r: &Reservation,
) -> Result<&'a crate::domain::SegmentRules, Error> {
    rules.segments.get(&r.segment).ok_or_else(|| {
        Error::FailedPrecondition(format!(
            "order {:?} is of segment {:?}, which the rules in force no longer have",
            r.order_id, r.segment
        ))
    })
}

/// The answer to a reroute made before under the call's id, or ALREADY_EXISTS if it asked
/// something else; `None` if there was none.
fn answered_before(
    r: &Reservation,
    call: &RerouteCall,
    digest: &str,
) -> Result<Option<Rerouted>, Error> {
    let Some(d) = r.history.iter().find(|d| d.reroute_id == call.reroute_id) else {
        return Ok(None);
    };
    if d.digest != digest {
        return Err(Error::AlreadyExists(format!(
            "reroute {:?} of order {:?} was made before with a different request",
            call.reroute_id, call.order_id
        )));
    }
    Ok(Some(Rerouted {
        reservation: r.clone(),
        decision: d.clone(),
        rerouted: false,
    }))
}

/// The units that leave the node: those the call names, or every unit outstanding there.
fn gone_units(call: &RerouteCall, r: &Reservation, order: &Order) -> Result<Vec<Gone>, Error> {
    let mut at_node: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
    for a in r.allocations.iter().filter(|a| a.node_id == call.node_id) {
        let e = at_node.entry(&a.line_id).or_insert((&a.sku, 0));
        e.1 += a.outstanding();
    }
    at_node.retain(|_, (_, units)| *units > 0);
    if at_node.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "node {:?} has no units of order {:?} outstanding",
            call.node_id, r.order_id
        )));
    }
    if call.lines.is_empty() {
        return Ok(at_node
            .into_iter()
            .map(|(line, (sku, units))| Gone {
                line_id: line.to_owned(),
                sku: sku.to_owned(),
                units,
            })
            .collect());
    }
    let mut gone = Vec::new();
    for (i, (line, units)) in call.lines.iter().enumerate() {
        if !order.lines.iter().any(|l| &l.line_id == line) {
            return Err(Error::invalid(
                format!("lines[{i}].line_id"),
                format!("order {:?} has no line {line:?}", r.order_id),
            ));
        }
        let Some((sku, outstanding)) = at_node.get(line.as_str()) else {
            return Err(Error::FailedPrecondition(format!(
                "lines[{i}].line_id: line {line:?} of order {:?} has no units outstanding at node {:?}",
                r.order_id, call.node_id
            )));
        };
        if units > outstanding {
            return Err(Error::FailedPrecondition(format!(
                "lines[{i}].quantity: {units} is more than the {outstanding} units of line {line:?} outstanding at node {:?}",
                call.node_id
            )));
        }
        gone.push(Gone {
            line_id: line.clone(),
            sku: (*sku).to_owned(),
            units: *units,
        });
    }
    Ok(gone)
}

/// Nodes still shipping part of the order (units outstanding or shipped) once the gone units
/// leave `node_id`.
fn active_parcels(allocations: &[Allocation], node_id: &str, gone: &[Gone]) -> u32 {
    let leaving: u64 = gone.iter().map(|g| g.units).sum();
    let mut per_node: BTreeMap<&str, u64> = BTreeMap::new();
    for a in allocations {
        *per_node.entry(&a.node_id).or_default() += a.quantity.saturating_sub(a.released);
    }
    let nodes: BTreeSet<&str> = per_node
        .into_iter()
        .filter(|(node, units)| {
            let left = if *node == node_id {
                units.saturating_sub(leaving)
            } else {
                *units
            };
            left > 0
        })
        .map(|(node, _)| node)
        .collect();
    nodes.len() as u32
}

/// The plan of an order no node may ship: every unit unfilled.
fn nothing_planned(
    order: &Order,
    kind: crate::domain::StrategyKind,
    version: &str,
    why: String,
) -> Plan {
    let units: Vec<Gone> = order
        .lines
        .iter()
        .map(|l| Gone {
            line_id: l.line_id.clone(),
            sku: l.sku.clone(),
            units: l.quantity,
        })
        .collect();
    plan_of_nothing(&units, kind, version, why)
}

/// A plan that ships none of `units`, saying why.
pub(super) fn plan_of_nothing(
    units: &[Gone],
    kind: crate::domain::StrategyKind,
    version: &str,
    why: String,
) -> Plan {
    Plan {
        shipments: Vec::new(),
        unfilled: units
            .iter()
            .map(|g| crate::domain::UnfilledLine {
                line_id: g.line_id.clone(),
                sku: g.sku.clone(),
                quantity: g.units,
                promised: None,
            })
            .collect(),
        total_cost: 0.0,
        cost: Default::default(),
        strategy: kind,
        status: crate::domain::SolveStatus::Heuristic,
        unused_nodes: Vec::new(),
        binding: vec![why],
        opportunity_cost: 0.0,
        plan_micros: 0,
        rules_version: version.to_owned(),
    }
}
