//! The server as operators and tools see it: health, reflection, graceful drain, and
//! concurrent checkouts that must never oversell.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use dom_router::api::pb;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

#[tokio::test]
async fn health_reports_serving_for_every_service() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel.clone());
    for service in ["", "dom.v1.Sourcing", "dom.v1.Inventory", "dom.v1.Network"] {
        let mut status = ServingStatus::Unknown;
        // NOT_SERVING until the first store check answers
        for _ in 0..100 {
            status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status();
            if status == ServingStatus::Serving {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status, ServingStatus::Serving, "service {service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "dom.v1.Nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    server.shutdown().await;
}

async fn reflect(server: &TestServer, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(server.channel.clone());
    let requests = tokio_stream::iter(vec![ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }]);
    let mut responses = client
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();
    responses
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

#[tokio::test]
async fn reflection_lists_and_describes_the_services() {
    let server = TestServer::start().await;
    let MessageResponse::ListServicesResponse(list) =
        reflect(&server, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "dom.v1.Sourcing",
        "dom.v1.Inventory",
        "dom.v1.Network",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &server,
        MessageRequest::FileContainingSymbol("dom.v1.Sourcing".into()),
    )
    .await
    else {
        panic!("expected file descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    let text = String::from_utf8_lossy(&files.file_descriptor_proto[0]);
    assert!(text.contains("dom/v1/sourcing.proto"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_stream_finish() {
    let server = TestServer::start().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::StockUpdate>(8);
    let mut inventory = server.inventory();
    let call = tokio::spawn(async move {
        inventory
            .push_stock(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let update = |sequence| plus_one("wh-getafe", "DRAIN-1", sequence);
    tx.send(update(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let addr = server.addr;
    let mut server = server;
    server.begin_shutdown();
    // the stream is still open: more updates go through after the shutdown began
    tx.send(update(2)).await.unwrap();
    tx.send(update(3)).await.unwrap();
    drop(tx);
    let summary = call.await.unwrap().unwrap().into_inner();
    assert_eq!(summary.applied, 3);
    let handle = server.handle.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("server stops after draining")
        .unwrap()
        .unwrap();
    // and it no longer accepts connections
    let refused = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reserves_never_oversell() {
    let server = TestServer::start().await;
    // 12 units of CONC-A across three nodes, 8 of CONC-B at one
    server
        .stock(&[
            ("wh-getafe", "CONC-A", 5, 0),
            ("wh-zaragoza", "CONC-A", 4, 0),
            ("st-valencia", "CONC-A", 3, 0),
            ("wh-sevilla", "CONC-B", 8, 0),
        ])
        .await;
    let mut tasks = Vec::new();
    for i in 0..80 {
        let mut sourcing = server.sourcing();
        tasks.push(tokio::spawn(async move {
            let mut lines = vec![line("a", "CONC-A", 1 + i % 3)];
            if i % 2 == 0 {
                lines.push(line("b", "CONC-B", 1));
            }
            // vip refuses partial plans, so a reservation either holds everything or nothing
            let o = order(&format!("conc-{i}"), "vip", lines);
            sourcing.reserve(reserve_request(o)).await
        }));
    }
    let mut held: HashMap<(String, String), i64> = HashMap::new();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(r) => {
                won += 1;
                let r = r.into_inner().reservation.unwrap();
                let plan = r.plan.as_ref().unwrap();
                assert!(plan.unfilled.is_empty());
                for a in &r.allocations {
                    *held.entry((a.node_id.clone(), a.sku.clone())).or_default() += a.quantity;
                }
            }
            Err(status) => assert!(
                matches!(status.code(), Code::FailedPrecondition | Code::Aborted),
                "{status:?}"
            ),
        }
    }
    assert!(won > 0);
    let total_a: i64 = held
        .iter()
        .filter(|(k, _)| k.1 == "CONC-A")
        .map(|(_, v)| v)
        .sum();
    let total_b: i64 = held
        .iter()
        .filter(|(k, _)| k.1 == "CONC-B")
        .map(|(_, v)| v)
        .sum();
    assert!(
        total_a <= 12 && total_b <= 8,
        "held {total_a} A and {total_b} B"
    );
    // the store agrees with the reservations, node by node
    for (node, sku, on_hand) in [
        ("wh-getafe", "CONC-A", 5),
        ("wh-zaragoza", "CONC-A", 4),
        ("st-valencia", "CONC-A", 3),
        ("wh-sevilla", "CONC-B", 8),
    ] {
        let (ats, seen_on_hand, reserved) = server.level(node, sku).await;
        let expected = held
            .get(&(node.to_owned(), sku.to_owned()))
            .copied()
            .unwrap_or(0);
        assert_eq!(reserved, expected, "{node} {sku}");
        assert_eq!(seen_on_hand, on_hand);
        assert_eq!(ats, on_hand - reserved);
        assert!(reserved <= on_hand);
    }
    server.shutdown().await;
}
