//! The requests of every `dom.v1` method as bytes on the wire: a codec that sends bytes as they
//! are and hands the reply back undecoded, so a test can send what no generated client would,
//! and the same decoding the server does, to tell what it should have made of them.

use std::time::Duration;

use dom_router::api::pb;
use prost::Message;
use prost::bytes::Bytes;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::common::raw::RawCodec;

/// A call that gets no answer by then has hung the server.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// Every method of `dom.v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Quote,
    Reserve,
    Commit,
    Release,
    Reroute,
    GetReservation,
    SetStock,
    PushStock,
    GetAvailability,
    ListNodes,
}

impl Method {
    pub fn path(self) -> &'static str {
        match self {
            Method::Quote => "/dom.v1.Sourcing/Quote",
            Method::Reserve => "/dom.v1.Sourcing/Reserve",
            Method::Commit => "/dom.v1.Sourcing/Commit",
            Method::Release => "/dom.v1.Sourcing/Release",
            Method::Reroute => "/dom.v1.Sourcing/Reroute",
            Method::GetReservation => "/dom.v1.Sourcing/GetReservation",
            Method::SetStock => "/dom.v1.Inventory/SetStock",
            Method::PushStock => "/dom.v1.Inventory/PushStock",
            Method::GetAvailability => "/dom.v1.Inventory/GetAvailability",
            Method::ListNodes => "/dom.v1.Network/ListNodes",
        }
    }

    /// The top-level fields of the request: an INVALID_ARGUMENT must blame one of them.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Method::Quote => &["order", "strategy"],
            Method::Reserve => &["order", "hold_ttl_seconds", "strategy"],
            Method::Commit | Method::GetReservation => &["order_id"],
            Method::Release => &["order_id", "line_ids"],
            Method::Reroute => &["order_id", "node_id", "lines", "reason", "reroute_id"],
            Method::SetStock | Method::PushStock => &["updates"],
            Method::GetAvailability => &["skus", "segment"],
            Method::ListNodes => &["kind"],
        }
    }

    /// The request these bytes are, decoded as the server decodes them.
    pub fn decode(self, frames: &[Vec<u8>]) -> Result<Call, prost::DecodeError> {
        let one = || frames.first().map(Vec::as_slice).unwrap_or_default();
        Ok(match self {
            Method::Quote => Call::Quote(pb::QuoteRequest::decode(one())?),
            Method::Reserve => Call::Reserve(pb::ReserveRequest::decode(one())?),
            Method::Commit => Call::Commit(pb::CommitRequest::decode(one())?),
            Method::Release => Call::Release(pb::ReleaseRequest::decode(one())?),
            Method::Reroute => Call::Reroute(pb::RerouteRequest::decode(one())?),
            Method::GetReservation => {
                Call::GetReservation(pb::GetReservationRequest::decode(one())?)
            }
            Method::SetStock => Call::SetStock(pb::SetStockRequest::decode(one())?),
            Method::PushStock => Call::PushStock(
                frames
                    .iter()
                    .map(|f| pb::StockUpdate::decode(f.as_slice()))
                    .collect::<Result<_, _>>()?,
            ),
            Method::GetAvailability => {
                Call::GetAvailability(pb::GetAvailabilityRequest::decode(one())?)
            }
            Method::ListNodes => Call::ListNodes(pb::ListNodesRequest::decode(one())?),
        })
    }
}

/// One request to the server, as the client means it.
#[derive(Clone, PartialEq)]
pub enum Call {
    Quote(pb::QuoteRequest),
    Reserve(pb::ReserveRequest),
    Commit(pb::CommitRequest),
    Release(pb::ReleaseRequest),
    Reroute(pb::RerouteRequest),
    GetReservation(pb::GetReservationRequest),
    SetStock(pb::SetStockRequest),
    /// The updates of one stream, a frame each.
    PushStock(Vec<pb::StockUpdate>),
    GetAvailability(pb::GetAvailabilityRequest),
    ListNodes(pb::ListNodesRequest),
}

impl Call {
    pub fn method(&self) -> Method {
        match self {
            Call::Quote(_) => Method::Quote,
            Call::Reserve(_) => Method::Reserve,
            Call::Commit(_) => Method::Commit,
            Call::Release(_) => Method::Release,
            Call::Reroute(_) => Method::Reroute,
            Call::GetReservation(_) => Method::GetReservation,
            Call::SetStock(_) => Method::SetStock,
            Call::PushStock(_) => Method::PushStock,
            Call::GetAvailability(_) => Method::GetAvailability,
            Call::ListNodes(_) => Method::ListNodes,
        }
    }

    /// The request's encoding: one frame, or one per update of a stream.
    pub fn frames(&self) -> Vec<Vec<u8>> {
        match self {
            Call::Quote(r) => vec![r.encode_to_vec()],
            Call::Reserve(r) => vec![r.encode_to_vec()],
            Call::Commit(r) => vec![r.encode_to_vec()],
            Call::Release(r) => vec![r.encode_to_vec()],
            Call::Reroute(r) => vec![r.encode_to_vec()],
            Call::GetReservation(r) => vec![r.encode_to_vec()],
            Call::SetStock(r) => vec![r.encode_to_vec()],
            Call::PushStock(updates) => updates.iter().map(Message::encode_to_vec).collect(),
            Call::GetAvailability(r) => vec![r.encode_to_vec()],
            Call::ListNodes(r) => vec![r.encode_to_vec()],
        }
    }

    pub fn orders(&self) -> Vec<&pb::Order> {
        match self {
            Call::Quote(r) => r.order.iter().collect(),
            Call::Reserve(r) => r.order.iter().collect(),
            _ => Vec::new(),
        }
    }

    pub fn updates(&self) -> &[pb::StockUpdate] {
        match self {
            Call::SetStock(r) => &r.updates,
            Call::PushStock(u) => u,
            _ => &[],
        }
    }

    /// Every sku the request names.
    pub fn skus(&self) -> Vec<&str> {
        let mut skus: Vec<&str> = self
            .orders()
            .into_iter()
            .flat_map(|o| o.lines.iter().map(|l| l.sku.as_str()))
            .chain(self.updates().iter().map(|u| u.sku.as_str()))
            .collect();
        if let Call::GetAvailability(r) = self {
            skus.extend(r.skus.iter().map(String::as_str));
        }
        skus
    }

    /// Every order id the request names.
    pub fn order_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .orders()
            .into_iter()
            .map(|o| o.order_id.as_str())
            .chain(self.updates().iter().map(|u| u.order_id.as_str()))
            .collect();
        match self {
            Call::Commit(r) => ids.push(&r.order_id),
            Call::Release(r) => ids.push(&r.order_id),
            Call::Reroute(r) => ids.push(&r.order_id),
            Call::GetReservation(r) => ids.push(&r.order_id),
            _ => {}
        }
        ids
    }
}

/// The method's answer: the reply's bytes, or the status.
pub type Reply = Result<Bytes, Status>;

/// Sends the frames to the method (one for a unary method, any number for PushStock).
pub async fn send(channel: &Channel, method: Method, frames: Vec<Vec<u8>>) -> Reply {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let path = http::uri::PathAndQuery::from_static(method.path());
    let call = async {
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
        let reply = if method == Method::PushStock {
            let stream = tokio_stream::iter(frames.into_iter().map(Bytes::from));
            grpc.client_streaming(tonic::Request::new(stream), path, RawCodec)
                .await
        } else {
            let body = frames.into_iter().next().unwrap_or_default();
            grpc.unary(tonic::Request::new(Bytes::from(body)), path, RawCodec)
                .await
        };
        reply.map(tonic::Response::into_inner)
    };
    match tokio::time::timeout(ANSWER_WITHIN, call).await {
        Ok(reply) => reply,
        Err(_) => Err(Status::new(
            Code::Unknown,
            format!("no answer within {ANSWER_WITHIN:?}"),
        )),
    }
}

/// Sends a request and decodes its answer.
pub async fn ask<R: Message + Default>(channel: &Channel, call: &Call) -> Result<R, Status> {
    let bytes = send(channel, call.method(), call.frames()).await?;
    R::decode(bytes).map_err(|e| Status::data_loss(format!("the reply does not decode: {e}")))
}
