//! Span export over OTLP (the `otel` feature): a real `dom-router` process sends its spans to
//! a collector started here, and each call arrives as a tree: the call, then plan, solve and
//! store under it, with the order id and segment on the call.
#![cfg(feature = "otel")]

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dom_router::api::pb;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use parking_lot::Mutex;

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A collector that keeps every span it is sent.
#[derive(Default, Clone)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
}

#[tokio::test]
async fn spans_reach_the_collector_as_a_tree_per_call() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    let (stop_collector, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dom-router"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env(
            "DOM_ROUTER__TRACING__OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("DOM_ROUTER__METRICS__LISTEN", "")
        // quiet logs must not thin the exported spans
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let order = common::order("traced-1", "vip", vec![common::line("l1", "APP-0001", 1)]);
    let started = Instant::now();
    let reserved = loop {
        let attempt = async {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await
                    .ok()?;
            let mut request = tonic::Request::new(pb::ReserveRequest {
                order: Some(order.clone()),
                hold_ttl_seconds: 0,
                strategy: 0,
            });
            // the caller's trace, sampled
            request.metadata_mut().insert(
                "traceparent",
                format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
                    .parse()
                    .unwrap(),
            );
            pb::sourcing_client::SourcingClient::new(channel)
                .reserve(request)
                .await
                .ok()
        };
        if let Some(r) = attempt.await {
            break Some(r);
        }
        if started.elapsed() > Duration::from_secs(30) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // shutting down flushes the spans still buffered
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reserved.is_some(), "the server never answered");
    let _ = stop_collector.send(());
    let _ = serving.await;

    let spans = collector.spans.lock().clone();
    let reserve = spans
        .iter()
        .find(|s| s.name == "reserve" && attribute(s, "order_id").as_deref() == Some("traced-1"))
        .unwrap_or_else(|| {
            panic!(
                "no reserve span; got {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(attribute(reserve, "segment").as_deref(), Some("vip"));
    // the call continues the caller's trace: its root span is a child of the caller's
    let call = spans
        .iter()
        .find(|s| s.span_id == reserve.parent_span_id)
        .expect("the reserve span's parent was exported");
    assert_eq!(call.name, "grpc");
    assert_eq!(hex(&call.trace_id), CALLER_TRACE);
    assert_eq!(hex(&call.parent_span_id), CALLER_SPAN);
    let children = |parent: &Span, name: &str| -> Vec<Span> {
        spans
            .iter()
            .filter(|s| {
                s.name == name
                    && s.trace_id == parent.trace_id
                    && s.parent_span_id == parent.span_id
            })
            .cloned()
            .collect()
    };
    let plan = children(reserve, "plan");
    assert_eq!(plan.len(), 1, "one plan under the reserve");
    assert!(attribute(&plan[0], "candidates").is_some());
    assert_eq!(children(&plan[0], "solve").len(), 1);
    let stores: Vec<String> = children(reserve, "store")
        .iter()
        .filter_map(|s| attribute(s, "op"))
        .collect();
    assert!(stores.iter().any(|op| op == "reserve"), "{stores:?}");
    assert!(stores.iter().any(|op| op == "read_state"), "{stores:?}");
}
