//! Hostile and malformed input against the real server: every case answers INVALID_ARGUMENT
//! naming the field, with a message of bounded size, and changes nothing.

mod common;

use common::raw;
use common::*;
use dom_router::api::pb;
use prost::Message;
use tonic::Code;

fn delta(node: &str, sku: &str, quantity: i64, sequence: u64) -> pb::StockUpdate {
    pb::StockUpdate {
        node_id: node.into(),
        sku: sku.into(),
        kind: pb::StockUpdateKind::Delta as i32,
        quantity,
        sequence,
        order_id: String::new(),
        safety_stock: None,
        reorder_point: None,
        ..Default::default()
    }
}

fn snapshot(node: &str, sku: &str, on_hand: i64, safety: Option<i64>, seq: u64) -> pb::StockUpdate {
    pb::StockUpdate {
        kind: pb::StockUpdateKind::Snapshot as i32,
        safety_stock: safety,
        ..delta(node, sku, on_hand, seq)
    }
}

/// The status of a call that must fail as INVALID_ARGUMENT blaming `field`, with a message
/// short enough for gRPC's metadata.
fn invalid<T: std::fmt::Debug>(result: Result<T, tonic::Status>, field: &str) -> String {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(field),
        "the message should blame {field}: {}",
        status.message()
    );
    assert!(
        status.message().len() <= 512,
        "{} bytes",
        status.message().len()
    );
    status.message().to_owned()
}

/// GetReservation, Commit and Release of `order_id`, each refused as INVALID_ARGUMENT blaming
/// `order_id`; their messages.
async fn refused_order_id(
    sourcing: &mut SourcingClient<tonic::transport::Channel>,
    order_id: &str,
) -> [String; 3] {
    let order_id = order_id.to_owned();
    [
        invalid(
            sourcing
                .get_reservation(pb::GetReservationRequest {
                    order_id: order_id.clone(),
                })
                .await,
            "order_id",
        ),
        invalid(
            sourcing
                .commit(pb::CommitRequest {
                    order_id: order_id.clone(),
                })
                .await,
            "order_id",
        ),
        invalid(
            sourcing
                .release(pb::ReleaseRequest {
                    order_id,
                    line_ids: vec![],
                })
                .await,
            "order_id",
        ),
    ]
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument() {
    let server = TestServer::start().await;
    // a length-delimited field whose length never ends; a varint field cut short
    for (path, body) in [
        ("/dom.v1.Sourcing/Commit", vec![0x0a]),
        ("/dom.v1.Sourcing/Quote", vec![0x08, 0x01]),
        ("/dom.v1.Sourcing/Reserve", vec![0x0a, 0x05, 0x0a]),
        ("/dom.v1.Inventory/SetStock", vec![0x0a, 0xff]),
        ("/dom.v1.Inventory/GetAvailability", vec![0xff, 0xff, 0xff]),
        ("/dom.v1.Network/ListNodes", vec![0x08]),
    ] {
        let status = raw::unary(&server.channel, path, body).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert!(
            status.message().starts_with("message:"),
            "{path}: {status:?}"
        );
    }
    // a string that is not UTF-8 cannot be decoded either
    let body = vec![0x0a, 0x02, 0xc3, 0x28];
    let status = raw::unary(&server.channel, "/dom.v1.Sourcing/GetReservation", body)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn a_push_stream_keeps_the_frames_before_a_bad_one() {
    let server = TestServer::start().await;
    let frames = vec![
        snapshot("wh-getafe", "RAW-1", 7, None, 1).encode_to_vec(),
        snapshot("st-madrid", "RAW-1", 3, None, 1).encode_to_vec(),
        vec![0x0a, 0xff],
        snapshot("wh-zaragoza", "RAW-1", 5, None, 1).encode_to_vec(),
    ];
    let status = raw::client_stream(&server.channel, "/dom.v1.Inventory/PushStock", frames)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("updates[2]:"), "{status:?}");
    assert_eq!(server.level("wh-getafe", "RAW-1").await.1, 7);
    assert_eq!(server.level("st-madrid", "RAW-1").await.1, 3);
    assert_eq!(server.level("wh-zaragoza", "RAW-1").await.1, 0);
}

#[tokio::test]
async fn long_values_are_cut_in_messages() {
    let server = TestServer::start().await;
    let long = "x".repeat(10_000);
    let mut sourcing = server.sourcing();
    for message in refused_order_id(&mut sourcing, &long).await {
        assert!(message.contains("10000 bytes long"), "{message}");
    }
    let mut o = order("long-1", "standard", vec![line("1", "APP-0003", 1)]);
    o.deliver_by = long.clone();
    let message = invalid(
        sourcing
            .quote(pb::QuoteRequest {
                order: Some(o.clone()),
                strategy: 0,
            })
            .await,
        "order.deliver_by",
    );
    assert!(message.contains("(10000 bytes)"), "{message}");
    invalid(
        sourcing.reserve(reserve_request(o)).await,
        "order.deliver_by",
    );
    let mut o = order("long-2", "standard", vec![line("1", "APP-0003", 1)]);
    o.destination.as_mut().unwrap().country = long.clone();
    invalid(
        sourcing
            .quote(pb::QuoteRequest {
                order: Some(o),
                strategy: 0,
            })
            .await,
        "order.destination.country",
    );
    invalid(
        server
            .inventory()
            .get_availability(pb::GetAvailabilityRequest {
                skus: vec!["APP-0003".into()],
                segment: long.clone(),
            })
            .await,
        "segment",
    );
}

#[tokio::test]
async fn one_rule_for_ids_everywhere() {
    let server = TestServer::start().await;
    let mut sourcing = server.sourcing();
    for bad in ["  ", "o\0", "o\u{7f}x", ""] {
        refused_order_id(&mut sourcing, bad).await;
        invalid(
            sourcing
                .release(pb::ReleaseRequest {
                    order_id: "fine".into(),
                    line_ids: vec!["1".into(), bad.into()],
                })
                .await,
            "line_ids[1]",
        );
    }
    let mut inventory = server.inventory();
    for bad in ["APP\0", &"A".repeat(10_000), " "] {
        invalid(
            inventory
                .get_availability(pb::GetAvailabilityRequest {
                    skus: vec!["APP-0003".into(), bad.into()],
                    segment: String::new(),
                })
                .await,
            "skus[1]",
        );
    }
    invalid(
        inventory
            .get_availability(pb::GetAvailabilityRequest {
                skus: vec!["APP-0003".into()],
                segment: "vip\0".into(),
            })
            .await,
        "segment",
    );
    // a well-formed id that is not there is still NOT_FOUND
    let status = sourcing
        .get_reservation(pb::GetReservationRequest {
            order_id: "no-such-order".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn messages_blame_what_is_wrong() {
    let server = TestServer::start().await;
    let mut sourcing = server.sourcing();
    for (bad, problem) in [
        ("x".repeat(10_000), "bytes long"),
        ("st-madrid\0".to_owned(), "control characters"),
        (String::new(), "is required for pickup orders"),
    ] {
        let mut o = order("pick-1", "standard", vec![line("1", "APP-0003", 1)]);
        o.delivery_mode = pb::DeliveryMode::Pickup as i32;
        o.pickup_node_id = bad;
        let message = invalid(
            sourcing
                .quote(pb::QuoteRequest {
                    order: Some(o),
                    strategy: 0,
                })
                .await,
            "order.pickup_node_id",
        );
        assert!(message.contains(problem), "{message}");
    }
    for (bad, problem) in [
        ("x".repeat(10_000), "bytes long"),
        (String::new(), "is required for SHIPMENT"),
    ] {
        let summary = server
            .inventory()
            .set_stock(pb::SetStockRequest {
                updates: vec![pb::StockUpdate {
                    kind: pb::StockUpdateKind::Shipment as i32,
                    order_id: bad,
                    ..delta("wh-getafe", "APP-0003", 1, 1)
                }],
            })
            .await
            .unwrap()
            .into_inner();
        let reason = &summary.rejections[0].reason;
        assert!(reason.starts_with("order_id:"), "{reason}");
        assert!(reason.contains(problem), "{reason}");
        assert!(reason.len() < 200, "{reason}");
    }
}

#[tokio::test]
async fn deliver_by_is_exactly_a_date() {
    let server = TestServer::start().await;
    server.stock(&[("wh-getafe", "DATE-1", 5, 0)]).await;
    let mut sourcing = server.sourcing();
    for bad in [
        " 2026-12-01",
        "2026-12-01 ",
        "0000-01-01",
        "-001-01-01",
        "+2026-12-01",
        "2026-1-01",
        "2026-02-30",
        "1999-12-31",
        "20261201",
    ] {
        let mut o = order("date-1", "standard", vec![line("1", "DATE-1", 1)]);
        o.deliver_by = bad.into();
        invalid(
            sourcing
                .quote(pb::QuoteRequest {
                    order: Some(o),
                    strategy: 0,
                })
                .await,
            "order.deliver_by",
        );
    }
    let mut o = order("date-2", "standard", vec![line("1", "DATE-1", 1)]);
    o.deliver_by = "2026-12-01".into();
    sourcing
        .quote(pb::QuoteRequest {
            order: Some(o),
            strategy: 0,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cut_rejection_list_says_how_much_it_left_out() {
    let server = TestServer::start().await;
    let updates: Vec<_> = (0..2_500)
        .map(|i| delta("wh-getafe", &format!("CUT-{i}"), -1, 1))
        .collect();
    let summary = server
        .inventory()
        .set_stock(pb::SetStockRequest { updates })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.rejected, 2_500);
    assert_eq!(summary.rejections.len(), 1_000);
    assert_eq!(summary.rejections_omitted, 1_500);
    assert_eq!(summary.rejections[999].index, 999);
    let small = server
        .inventory()
        .set_stock(pb::SetStockRequest {
            updates: vec![delta("wh-getafe", "CUT-X", -1, 1)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((small.rejected, small.rejections_omitted), (1, 0));
}

#[tokio::test]
async fn stock_figures_are_bounded_and_never_wrap() {
    let server = TestServer::start().await;
    let limit: i64 = 1_000_000_000_000;
    server.stock(&[("wh-getafe", "BIG-1", 40, 0)]).await;
    let cases = [
        delta("wh-getafe", "BIG-1", i64::MAX, 100),
        delta("wh-getafe", "BIG-1", i64::MIN, 101),
        delta("wh-getafe", "BIG-1", limit + 1, 102),
        snapshot("wh-getafe", "BIG-1", i64::MAX, None, 103),
        snapshot("wh-getafe", "BIG-1", limit + 1, None, 104),
        snapshot("wh-getafe", "BIG-1", 5, Some(i64::MAX), 105),
        pb::StockUpdate {
            kind: pb::StockUpdateKind::Shipment as i32,
            order_id: "o-1".into(),
            ..delta("wh-getafe", "BIG-1", i64::MAX, 106)
        },
    ];
    let summary = server
        .inventory()
        .set_stock(pb::SetStockRequest {
            updates: cases.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.applied, 0, "{summary:?}");
    assert_eq!(summary.rejected as usize, cases.len(), "{summary:?}");
    for r in &summary.rejections {
        let field = if r.index == 5 {
            "safety_stock:"
        } else {
            "quantity:"
        };
        assert!(r.reason.starts_with(field), "{r:?}");
    }
    assert_eq!(server.level("wh-getafe", "BIG-1").await, (40, 40, 0));

    // up to the limit exactly, then one more is refused and nothing changes
    let summary = server
        .inventory()
        .set_stock(pb::SetStockRequest {
            updates: vec![
                delta("wh-getafe", "BIG-1", limit - 40, 20_000),
                delta("wh-getafe", "BIG-1", 1, 20_001),
                snapshot("st-madrid", "BIG-1", limit, None, 1),
                snapshot("wh-zaragoza", "BIG-1", limit, None, 1),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.applied, summary.rejected), (3, 1), "{summary:?}");
    assert!(
        summary.rejections[0].reason.contains("above"),
        "{summary:?}"
    );
    let a = server
        .inventory()
        .get_availability(pb::GetAvailabilityRequest {
            skus: vec!["BIG-1".into()],
            segment: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a.skus[0].on_hand, 3 * limit);
    assert_eq!(
        a.skus[0].on_hand,
        a.skus[0].nodes.iter().map(|n| n.on_hand).sum::<i64>()
    );
}

#[tokio::test]
async fn a_reserve_says_whether_it_holds_every_unit() {
    let server = TestServer::start().await;
    server.stock(&[("wh-getafe", "PART-1", 2, 0)]).await;
    let mut sourcing = server.sourcing();
    // standard may ship part of an order; nothing at all of PART-2 exists
    let r = sourcing
        .reserve(reserve_request(order(
            "part-1",
            "standard",
            vec![line("1", "PART-1", 5), line("2", "PART-2", 1)],
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.complete);
    assert_eq!(r.units_held, 2);
    let r = sourcing
        .reserve(reserve_request(order(
            "part-2",
            "standard",
            vec![line("1", "PART-2", 3)],
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.complete);
    assert_eq!(r.units_held, 0);
    server.stock(&[("wh-getafe", "PART-3", 4, 0)]).await;
    let r = sourcing
        .reserve(reserve_request(order(
            "part-3",
            "standard",
            vec![line("1", "PART-3", 4)],
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(r.complete);
    assert_eq!(r.units_held, 4);
}

/// How many of `skus` show `on_hand` units, once they all do or after five seconds: frames a
/// stream left behind are applied by a task of their own, a moment after the call ends.
async fn skus_reaching(server: &TestServer, skus: &[String], on_hand: i64) -> usize {
    let mut reached = 0;
    for _ in 0..50 {
        let a = server
            .inventory()
            .get_availability(pb::GetAvailabilityRequest {
                skus: skus.to_vec(),
                segment: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        reached = a.skus.iter().filter(|s| s.on_hand == on_hand).count();
        if reached == skus.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    reached
}

#[tokio::test]
async fn a_push_stream_its_caller_abandons_keeps_what_it_sent() {
    let server = TestServer::start().await;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let skus: Vec<String> = (0..40).map(|i| format!("GONE-{i}")).collect();
    for sku in &skus {
        tx.send(snapshot("wh-getafe", sku, 3, None, 1))
            .await
            .unwrap();
    }
    let mut inventory = server.inventory();
    let call = tokio::spawn(async move {
        inventory
            .push_stock(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // the frames reach the server; then the caller goes away with the stream still open
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    call.abort();
    let _ = call.await;
    drop(tx);
    let applied = skus_reaching(&server, &skus, 3).await;
    assert_eq!(
        applied,
        skus.len(),
        "frames received before the caller left were lost"
    );
}

#[tokio::test]
async fn a_push_stream_cut_by_the_request_timeout_keeps_what_it_sent() {
    let mut config = demo_config();
    config.settings.server.request_timeout_ms = 300;
    let server = TestServer::start_with(config).await;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let skus: Vec<String> = (0..40).map(|i| format!("LATE-{i}")).collect();
    for sku in &skus {
        tx.send(snapshot("wh-getafe", sku, 4, None, 1))
            .await
            .unwrap();
    }
    // the stream stays open past the server's timeout
    let status = server
        .inventory()
        .push_stock(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    // the caller keeps its end of the stream open: what came before the timeout applies anyway
    let applied = skus_reaching(&server, &skus, 4).await;
    assert_eq!(
        applied,
        skus.len(),
        "frames received before the timeout were lost"
    );
}

#[tokio::test]
async fn rejections_echo_ids_cut_to_the_id_limit() {
    let server = TestServer::start().await;
    let long = "é".repeat(5_000);
    let summary = server
        .inventory()
        .set_stock(pb::SetStockRequest {
            updates: vec![
                snapshot(&long, "APP-0003", 1, None, 1),
                snapshot("wh-getafe", &long, 1, None, 1),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.rejected, 2);
    for r in &summary.rejections {
        assert!(r.node_id.len() <= 128 && r.sku.len() <= 128, "{r:?}");
        assert!(r.reason.len() < 200, "{r:?}");
    }
    assert!(long.starts_with(&summary.rejections[0].node_id));
}

#[tokio::test]
async fn a_released_reservation_holds_nothing_and_is_not_complete() {
    let server = TestServer::start().await;
    server.stock(&[("wh-getafe", "GONE-1", 5, 0)]).await;
    let mut sourcing = server.sourcing();
    let request = reserve_request(order("gone-1", "standard", vec![line("1", "GONE-1", 2)]));
    let first = sourcing
        .reserve(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(first.complete && first.created);
    assert_eq!(first.units_held, 2);
    sourcing
        .release(pb::ReleaseRequest {
            order_id: "gone-1".into(),
            line_ids: vec![],
        })
        .await
        .unwrap();
    // the same Reserve again answers with the released reservation, which holds nothing
    let again = sourcing.reserve(request).await.unwrap().into_inner();
    assert!(!again.created);
    assert!(!again.complete);
    assert_eq!(again.units_held, 0);
}
