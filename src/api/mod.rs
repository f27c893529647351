//! The gRPC adapters of `dom.v1`: each handler validates and converts the request, calls the
//! [`Engine`], and converts the answer back. Errors become statuses in one exhaustive mapping.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, Span, instrument};

use crate::config::ServerSettings;
use crate::engine::Engine;
use crate::error::Error;
use crate::store::UpdateResult;

pub(crate) mod codec;
pub mod convert;
pub mod events;

/// The generated protobuf types and service stubs of `dom.v1`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("dom.v1");

    /// The encoded descriptors of every `dom.v1` file, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("dom_v1_descriptor");
}

/// Rejections listed in one PushStock answer at most; the counts stay exact beyond it.
pub const MAX_REJECTIONS_LISTED: usize = 1000;
/// Updates of a PushStock stream applied to the store together.
const PUSH_BATCH: usize = 512;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::Refused(r) => Status::failed_precondition(r.to_string()),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Aborted(m) => Status::aborted(m),
            Error::OutOfRange(m) => Status::out_of_range(m),
            Error::Unavailable(m) => Status::unavailable(m),
            Error::Internal(m) => Status::internal(m),
        }
    }
}

fn record_order(order_id: &str, segment: &str) {
    let span = Span::current();
    span.record("order_id", order_id);
    span.record("segment", segment);
}

/// What the API accepts in one call: its own part of the server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_lines_per_order: usize,
    pub max_updates_per_call: usize,
    pub max_skus_per_query: usize,
}

impl From<&ServerSettings> for Limits {
    fn from(s: &ServerSettings) -> Self {
        Self {
            max_lines_per_order: s.max_lines_per_order,
            max_updates_per_call: s.max_updates_per_call,
            max_skus_per_query: s.max_skus_per_query,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourcingApi {
    engine: Arc<Engine>,
    limits: Limits,
}

impl SourcingApi {
    pub fn new(engine: Arc<Engine>, limits: Limits) -> Self {
        Self { engine, limits }
    }

    fn max_lines(&self) -> usize {
        self.limits.max_lines_per_order
    }
}

#[tonic::async_trait]
impl pb::sourcing_server::Sourcing for SourcingApi {
    #[instrument(name = "quote", skip_all, fields(order_id, segment))]
    async fn quote(
        &self,
        request: Request<pb::QuoteRequest>,
    ) -> Result<Response<pb::QuoteResponse>, Status> {
        let r = request.into_inner();
        let order = convert::order(r.order, self.max_lines())?;
        record_order(&order.order_id, &order.segment);
        let kind = convert::strategy("strategy", r.strategy)?;
        let plan = self.engine.quote(&order, kind).await?;
        Ok(Response::new(pb::QuoteResponse {
            plan: Some(convert::plan(&plan)),
        }))
    }

    #[instrument(name = "reserve", skip_all, fields(order_id, segment))]
    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let r = request.into_inner();
        let order = convert::order(r.order, self.max_lines())?;
        record_order(&order.order_id, &order.segment);
        let kind = convert::strategy("strategy", r.strategy)?;
        let ttl = (r.hold_ttl_seconds != 0).then_some(r.hold_ttl_seconds);
        let (reservation, created) = self.engine.reserve(&order, ttl, kind).await?;
        Ok(Response::new(pb::ReserveResponse {
            complete: convert::complete(&reservation),
            units_held: convert::units_held(&reservation) as i64,
            reservation: Some(convert::reservation(&reservation)),
            created,
        }))
    }

    #[instrument(name = "commit", skip_all, fields(order_id))]
    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let r = request.into_inner();
        convert::id("order_id", &r.order_id)?;
        Span::current().record("order_id", r.order_id.as_str());
        let reservation = self.engine.commit(&r.order_id).await?;
        Ok(Response::new(pb::CommitResponse {
            reservation: Some(convert::reservation(&reservation)),
        }))
    }

    #[instrument(name = "release", skip_all, fields(order_id))]
    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let r = request.into_inner();
        convert::id("order_id", &r.order_id)?;
        Span::current().record("order_id", r.order_id.as_str());
        for (i, line_id) in r.line_ids.iter().enumerate() {
            convert::id(&format!("line_ids[{i}]"), line_id)?;
        }
        let reservation = self.engine.release(&r.order_id, &r.line_ids).await?;
        Ok(Response::new(pb::ReleaseResponse {
            reservation: Some(convert::reservation(&reservation)),
        }))
    }

    #[instrument(name = "reroute", skip_all, fields(order_id))]
    async fn reroute(
        &self,
        request: Request<pb::RerouteRequest>,
    ) -> Result<Response<pb::RerouteResponse>, Status> {
        let r = request.into_inner();
        let call = convert::reroute(&r)?;
        Span::current().record("order_id", call.order_id.as_str());
        let done = self.engine.reroute(&call).await?;
        Ok(Response::new(pb::RerouteResponse {
            reservation: Some(convert::reservation(&done.reservation)),
            outcomes: done
                .decision
                .fates
                .iter()
                .map(convert::unit_outcome)
                .collect(),
            plan: Some(convert::plan(&done.decision.plan)),
            rerouted: done.rerouted,
        }))
    }

    #[instrument(name = "get_reservation", skip_all, fields(order_id))]
    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        let r = request.into_inner();
        convert::id("order_id", &r.order_id)?;
        Span::current().record("order_id", r.order_id.as_str());
        let reservation = self.engine.reservation(&r.order_id).await?;
        Ok(Response::new(pb::GetReservationResponse {
            reservation: Some(convert::reservation(&reservation)),
        }))
    }
}

#[derive(Debug, Clone)]
pub struct InventoryApi {
    engine: Arc<Engine>,
    limits: Limits,
}

impl InventoryApi {
    pub fn new(engine: Arc<Engine>, limits: Limits) -> Self {
        Self { engine, limits }
    }

    /// Applies a batch of wire updates numbered from `first_index`, adding to `summary`.
    async fn apply(
        &self,
        batch: Vec<pb::StockUpdate>,
        first_index: u64,
        summary: &mut pb::PushStockResponse,
    ) -> Result<(), Status> {
        let mut rejected_here: Vec<(u64, String)> = Vec::new();
        let mut valid = Vec::with_capacity(batch.len());
        let mut keys = Vec::with_capacity(batch.len());
        let today = self.engine.today();
        for (i, u) in batch.iter().enumerate() {
            let index = first_index + i as u64;
            match convert::stock_update(u.clone(), today) {
                Ok(update) => {
                    valid.push(update);
                    keys.push(index);
                }
                Err(reason) => rejected_here.push((index, reason)),
            }
        }
        crate::metrics::feed_malformed(rejected_here.len() as u64);
        let results = self.engine.apply_stock(valid).await?;
        let mut rejections = rejected_here;
        for (index, result) in keys.into_iter().zip(results) {
            match result {
                UpdateResult::Applied => summary.applied += 1,
                UpdateResult::Stale => summary.stale += 1,
                UpdateResult::Rejected(reason) => rejections.push((index, reason)),
            }
        }
        rejections.sort_by_key(|r| r.0);
        for (index, reason) in rejections {
            summary.rejected += 1;
            if summary.rejections.len() >= MAX_REJECTIONS_LISTED {
                summary.rejections_omitted += 1;
            } else {
                let u = &batch[(index - first_index) as usize];
                summary.rejections.push(pb::RejectedUpdate {
                    index,
                    node_id: convert::cut_id(&u.node_id),
                    sku: convert::cut_id(&u.sku),
                    sequence: u.sequence,
                    reason,
                });
            }
        }
        Ok(())
    }
    /// Applies a PushStock stream frame by frame, in batches; see the proto for what a stream
    /// cut short keeps.
    async fn take_stream(
        &self,
        mut stream: Streaming<pb::StockUpdate>,
        mut call_gone: tokio::sync::oneshot::Receiver<()>,
    ) -> Result<pb::PushStockResponse, Status> {
        let mut summary = pb::PushStockResponse::default();
        let mut batch = Vec::with_capacity(PUSH_BATCH);
        let mut next_index = 0u64;
        // every frame received whole is applied, whatever ends the stream after it: each
        // update carries its own sequence, so a feed that sends the stream again is safe
        let ended = loop {
            let frame = tokio::select! {
                frame = stream.message() => frame,
                // the call ended (timeout, a caller gone, shutdown) with the stream still open:
                // what came before stays, and nothing after it is read
                _ = &mut call_gone => Err(Status::cancelled("the call ended before the stream")),
            };
            let end = match frame {
                Ok(Some(update)) => {
                    batch.push(update);
                    if batch.len() < PUSH_BATCH {
                        continue;
                    }
                    None
                }
                Ok(None) => Some(Ok(())),
                Err(status) => Some(Err(status)),
            };
            if !batch.is_empty() {
                let n = batch.len() as u64;
                self.apply(std::mem::take(&mut batch), next_index, &mut summary)
                    .await?;
                next_index += n;
            }
            if let Some(end) = end {
                break end;
            }
        };
        Span::current().record("updates", next_index);
        match ended {
            Ok(()) => Ok(summary),
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                Err(Status::invalid_argument(format!(
                    "updates[{next_index}]: {}; the {next_index} updates before it were taken \
                     ({} applied, {} stale, {} rejected)",
                    status.message(),
                    summary.applied,
                    summary.stale,
                    summary.rejected
                )))
            }
            Err(status) => Err(status),
        }
    }
}

#[tonic::async_trait]
impl pb::inventory_server::Inventory for InventoryApi {
    #[instrument(name = "push_stock", skip_all, fields(updates))]
    async fn push_stock(
        &self,
        request: Request<Streaming<pb::StockUpdate>>,
    ) -> Result<Response<pb::PushStockResponse>, Status> {
        // the stream is taken on a task of its own, so that a caller who goes away (or the
        // request timeout) cannot drop updates already received before they are applied
        let api = self.clone();
        let stream = request.into_inner();
        let span = Span::current();
        // dropped with this call, which tells the task to apply what it has and stop
        let (_call, call_gone) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move { api.take_stream(stream, call_gone).await }.instrument(span))
            .await
            .unwrap_or_else(|_| Err(Status::internal("taking the stock stream failed")))
            .map(Response::new)
    }

    #[instrument(name = "set_stock", skip_all, fields(updates))]
    async fn set_stock(
        &self,
        request: Request<pb::SetStockRequest>,
    ) -> Result<Response<pb::PushStockResponse>, Status> {
        let updates = request.into_inner().updates;
        Span::current().record("updates", updates.len());
        let max = self.limits.max_updates_per_call;
        if updates.len() > max {
            return Err(Error::invalid(
                "updates",
                format!(
                    "{} updates; the limit is {max} per call (stream more with PushStock)",
                    updates.len()
                ),
            )
            .into());
        }
        let mut summary = pb::PushStockResponse::default();
        self.apply(updates, 0, &mut summary).await?;
        Ok(Response::new(summary))
    }

    #[instrument(name = "get_availability", skip_all)]
    async fn get_availability(
        &self,
        request: Request<pb::GetAvailabilityRequest>,
    ) -> Result<Response<pb::GetAvailabilityResponse>, Status> {
        let r = request.into_inner();
        if r.skus.is_empty() {
            return Err(Error::invalid("skus", "name at least one sku").into());
        }
        let max = self.limits.max_skus_per_query;
        if r.skus.len() > max {
            return Err(Error::invalid(
                "skus",
                format!("{} skus; the limit is {max}", r.skus.len()),
            )
            .into());
        }
        for (i, sku) in r.skus.iter().enumerate() {
            convert::id(&format!("skus[{i}]"), sku)?;
        }
        if !r.segment.is_empty() {
            convert::id("segment", &r.segment)?;
        }
        let segment = (!r.segment.is_empty()).then_some(r.segment.as_str());
        let skus = self.engine.availability(&r.skus, segment).await?;
        Ok(Response::new(pb::GetAvailabilityResponse {
            skus: skus
                .into_iter()
                .map(|s| pb::SkuAvailability {
                    sku: s.sku,
                    on_hand: s.on_hand as i64,
                    reserved: s.reserved as i64,
                    safety_stock: s.safety_stock as i64,
                    ats: s.ats as i64,
                    nodes: s
                        .nodes
                        .into_iter()
                        .map(|n| pb::NodeStock {
                            node_id: n.node_id,
                            on_hand: n.level.on_hand as i64,
                            reserved: n.level.reserved as i64,
                            safety_stock: n.level.safety_stock as i64,
                            ats: n.ats as i64,
                            last_sequence: n.level.last_sequence,
                            low_stock_threshold: n
                                .threshold
                                .map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
                            below_threshold: n.below_threshold,
                        })
                        .collect(),
                    low_stock_threshold: s.threshold.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
                    below_threshold: s.below_threshold,
                    inbound: s
                        .inbound
                        .into_iter()
                        .map(|(day, units)| pb::InboundSupply {
                            expected_date: day.to_string(),
                            units: i64::try_from(units).unwrap_or(i64::MAX),
                        })
                        .collect(),
                    waiting: s
                        .waiting
                        .into_iter()
                        .map(|(segment, units)| pb::SegmentWaiting {
                            segment,
                            units: i64::try_from(units).unwrap_or(i64::MAX),
                        })
                        .collect(),
                })
                .collect(),
        }))
    }
}

#[derive(Debug, Clone)]
pub struct NetworkApi {
    engine: Arc<Engine>,
}

impl NetworkApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl pb::network_server::Network for NetworkApi {
    #[instrument(name = "list_nodes", skip_all)]
    async fn list_nodes(
        &self,
        request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let kind = convert::node_kind_filter(request.into_inner().kind)?;
        let rules = self.engine.rules();
        let nodes = rules
            .network
            .nodes()
            .iter()
            .filter(|n| kind.is_none_or(|k| n.kind == k))
            .map(|n| pb::Node {
                node_id: n.id.clone(),
                name: n.name.clone(),
                kind: convert::node_kind(n.kind) as i32,
                location: Some(pb::GeoPoint {
                    lat: n.location.lat,
                    lon: n.location.lon,
                }),
                city: n.city.clone(),
                country: n.country.clone(),
                can_ship: n.can_ship,
                can_pickup: n.can_pickup,
                enabled: n.enabled,
                priority: n.priority,
                daily_capacity_units: i64::try_from(n.daily_capacity_units).unwrap_or(i64::MAX),
                processing_days: n.processing_days as i32,
                transit_km_per_day: n.transit_km_per_day,
                cost: Some(pb::CostModel {
                    handling_per_unit: n.cost.handling_per_unit,
                    per_parcel: n.cost.per_parcel,
                    per_parcel_km: n.cost.per_parcel_km,
                    per_unit_km: n.cost.per_unit_km,
                }),
            })
            .collect();
        Ok(Response::new(pb::ListNodesResponse {
            nodes,
            segments: rules.segments.names(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::domain::{NodeKind, Refusal, RefusalKind, Shortage, StrategyKind, UnfilledPolicy};
    use crate::sourcing::tests::{node, order, rules};

    #[test]
    fn a_refusal_is_a_failed_precondition_saying_why() {
        let o = order(&[("1", "A", 4, None)]);
        let mut whole = o.clone();
        whole.ship_complete = true;
        let segment = rules(2, UnfilledPolicy::Reject);
        let short = vec![Shortage {
            sku: "A".into(),
            wanted: 4,
            available: 1,
        }];
        let shop = node("shop", NodeKind::Store, 40.4, -3.7, 1);
        let refusals = [
            (
                Refusal::pickup_store(&o, &segment, &shop, "excluded by segment test".into()),
                "segment test may not use pickup store shop: excluded by segment test",
            ),
            (
                Refusal::unfillable(&o, &segment, short.clone(), None),
                "no plan sources order o-1 under its rules (A wants 4, 1 available to segment test): segment test does not allow partial fulfilment or backorders",
            ),
            (
                Refusal::unfillable(&o, &segment, Vec::new(), None),
                "no plan sources order o-1 under its rules (the stock exists, but no plan of at most 2 shipment(s) within node capacity and kits covers it): segment test does not allow partial fulfilment or backorders",
            ),
            (
                Refusal::unfillable(&whole, &segment, short, None),
                "no plan sources order o-1 under its rules (A wants 4, 1 available to segment test): the order is ship-complete: one shipment with everything, or none",
            ),
            (
                Refusal::unfillable(&whole, &segment, Vec::new(), None),
                "no plan sources order o-1 under its rules (the stock exists, but no plan of at most 1 shipment(s) within node capacity and kits covers it): the order is ship-complete: one shipment with everything, or none",
            ),
            (
                Refusal::unfillable(&o, &segment, Vec::new(), Some(StrategyKind::Optimal)),
                "no plan sources order o-1 under its rules (the stock exists, but strategy optimal found no plan of at most 2 shipment(s) within node capacity and kits that covers it before its solve budget ran out): segment test does not allow partial fulfilment or backorders",
            ),
        ];
        let kinds: Vec<RefusalKind> = refusals.iter().map(|(r, _)| r.kind).collect();
        assert_eq!(
            kinds,
            [
                RefusalKind::PickupStoreNotAllowed,
                RefusalKind::NotEnoughStock,
                RefusalKind::StockTooSpread,
                RefusalKind::ShipCompleteNotEnoughStock,
                RefusalKind::ShipCompleteTooSpread,
                RefusalKind::NoPlanFound(StrategyKind::Optimal),
            ]
        );
        for (refusal, message) in refusals {
            let status = Status::from(Error::from(refusal));
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert_eq!(status.message(), message);
        }
    }
}
