//! The gRPC API end to end: the real server on loopback, the generated tonic clients.

mod common;

use common::*;
use dom_router::api::pb;
use tonic::Code;

fn state(r: &pb::Reservation) -> pb::ReservationState {
    pb::ReservationState::try_from(r.state).unwrap()
}

fn shipment_update(node: &str, sku: &str, seq: u64, order: &str, quantity: i64) -> pb::StockUpdate {
    pb::StockUpdate {
        node_id: node.into(),
        sku: sku.into(),
        kind: pb::StockUpdateKind::Shipment as i32,
        quantity,
        sequence: seq,
        order_id: order.into(),
        safety_stock: None,
        reorder_point: None,
        ..Default::default()
    }
}

fn update(
    node: &str,
    sku: &str,
    kind: pb::StockUpdateKind,
    quantity: i64,
    seq: u64,
) -> pb::StockUpdate {
    pb::StockUpdate {
        node_id: node.into(),
        sku: sku.into(),
        kind: kind as i32,
        quantity,
        sequence: seq,
        order_id: String::new(),
        safety_stock: None,
        reorder_point: None,
        ..Default::default()
    }
}

#[tokio::test]
async fn reserve_commit_ship_and_availability_cycle() {
    let server = TestServer::start().await;
    server
        .stock(&[
            ("wh-getafe", "CYC-1", 10, 2),
            ("st-valencia", "CYC-1", 3, 0),
        ])
        .await;
    let mut sourcing = server.sourcing();

    let quote = sourcing
        .quote(pb::QuoteRequest {
            order: Some(order("cyc-1", "standard", vec![line("1", "CYC-1", 2)])),
            strategy: pb::Strategy::Nearest as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    // nearest takes the Valencia store, next to the destination
    assert_eq!(quote.shipments.len(), 1);
    assert_eq!(quote.shipments[0].node_id, "st-valencia");
    assert_eq!(
        server.level("st-valencia", "CYC-1").await,
        (3, 3, 0),
        "a quote holds nothing"
    );

    let reserved = sourcing
        .reserve(reserve_request(order(
            "cyc-1",
            "standard",
            vec![line("1", "CYC-1", 5)],
        )))
        .await
        .unwrap()
        .into_inner();
    assert!(reserved.created);
    let r = reserved.reservation.unwrap();
    assert_eq!(state(&r), pb::ReservationState::Held);
    assert!(r.expires_at.is_some());
    let held: i64 = r.allocations.iter().map(|a| a.quantity).sum();
    assert_eq!(held, 5);
    let at = |node: &str| -> i64 {
        r.allocations
            .iter()
            .filter(|a| a.node_id == node)
            .map(|a| a.quantity)
            .sum()
    };
    let (valencia, getafe) = (at("st-valencia"), at("wh-getafe"));
    assert_eq!(valencia + getafe, 5);
    assert_eq!(
        server.level("st-valencia", "CYC-1").await,
        (3 - valencia, 3, valencia)
    );
    assert_eq!(
        server.level("wh-getafe", "CYC-1").await,
        (8 - getafe, 10, getafe)
    );

    let committed = sourcing
        .commit(pb::CommitRequest {
            order_id: "cyc-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(state(&committed), pb::ReservationState::Committed);
    assert!(committed.expires_at.is_none());

    // every node ships its part; on hand and the allocation go down together
    let updates = [("st-valencia", valencia), ("wh-getafe", getafe)]
        .into_iter()
        .filter(|(_, q)| *q > 0)
        .map(|(node, q)| shipment_update(node, "CYC-1", 5_000, "cyc-1", q))
        .collect::<Vec<_>>();
    let n = updates.len() as u64;
    let summary = server
        .inventory()
        .set_stock(pb::SetStockRequest { updates })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.applied, summary.rejected), (n, 0), "{summary:?}");
    assert_eq!(
        server.level("st-valencia", "CYC-1").await,
        (3 - valencia, 3 - valencia, 0)
    );
    assert_eq!(
        server.level("wh-getafe", "CYC-1").await,
        (8 - getafe, 10 - getafe, 0)
    );

    let r = sourcing
        .get_reservation(pb::GetReservationRequest {
            order_id: "cyc-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(state(&r), pb::ReservationState::Fulfilled);
    assert!(r.allocations.iter().all(|a| a.shipped == a.quantity));

    let availability = server
        .inventory()
        .get_availability(pb::GetAvailabilityRequest {
            skus: vec!["CYC-1".into()],
            segment: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let sku = &availability.skus[0];
    assert_eq!(
        (sku.on_hand, sku.reserved, sku.safety_stock, sku.ats),
        (8, 0, 2, 6)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn reserve_is_idempotent_by_order_id() {
    let server = TestServer::start().await;
    server.stock(&[("wh-sevilla", "IDEM-1", 10, 0)]).await;
    let mut sourcing = server.sourcing();
    let request = reserve_request(order("idem-1", "standard", vec![line("1", "IDEM-1", 4)]));
    let first = sourcing
        .reserve(request.clone())
        .await
        .unwrap()
        .into_inner();
    let second = sourcing.reserve(request).await.unwrap().into_inner();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.reservation, second.reservation);
    assert_eq!(server.level("wh-sevilla", "IDEM-1").await, (6, 10, 4));

    let different = sourcing
        .reserve(reserve_request(order(
            "idem-1",
            "standard",
            vec![line("1", "IDEM-1", 5)],
        )))
        .await
        .unwrap_err();
    assert_eq!(different.code(), Code::AlreadyExists, "{different:?}");
    assert_eq!(server.level("wh-sevilla", "IDEM-1").await, (6, 10, 4));
    server.shutdown().await;
}

#[tokio::test]
async fn release_whole_or_by_line_is_idempotent() {
    let server = TestServer::start().await;
    server
        .stock(&[
            ("wh-zaragoza", "REL-1", 10, 0),
            ("wh-zaragoza", "REL-2", 10, 0),
        ])
        .await;
    let mut sourcing = server.sourcing();
    sourcing
        .reserve(reserve_request(order(
            "rel-1",
            "standard",
            vec![line("a", "REL-1", 2), line("b", "REL-2", 3)],
        )))
        .await
        .unwrap();
    let release_b = pb::ReleaseRequest {
        order_id: "rel-1".into(),
        line_ids: vec!["b".into()],
    };
    let r = sourcing
        .release(release_b.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state(r.reservation.as_ref().unwrap()),
        pb::ReservationState::Held
    );
    sourcing.release(release_b).await.unwrap();
    assert_eq!(server.level("wh-zaragoza", "REL-2").await, (10, 10, 0));
    assert_eq!(server.level("wh-zaragoza", "REL-1").await, (8, 10, 2));

    let unknown_line = sourcing
        .release(pb::ReleaseRequest {
            order_id: "rel-1".into(),
            line_ids: vec!["zz".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown_line.code(), Code::InvalidArgument);
    assert!(
        unknown_line.message().contains("line_ids"),
        "{unknown_line:?}"
    );

    let all = pb::ReleaseRequest {
        order_id: "rel-1".into(),
        line_ids: vec![],
    };
    let r = sourcing.release(all.clone()).await.unwrap().into_inner();
    assert_eq!(
        state(r.reservation.as_ref().unwrap()),
        pb::ReservationState::Released
    );
    let again = sourcing.release(all).await.unwrap().into_inner();
    assert_eq!(r, again);
    assert_eq!(server.level("wh-zaragoza", "REL-1").await, (10, 10, 0));

    let commit = sourcing
        .commit(pb::CommitRequest {
            order_id: "rel-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(commit.code(), Code::FailedPrecondition);
    let missing = sourcing
        .release(pb::ReleaseRequest {
            order_id: "never".into(),
            line_ids: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.shutdown().await;
}

#[tokio::test]
async fn holds_expire_and_return_their_stock() {
    let server = TestServer::start().await;
    server.stock(&[("wh-getafe", "EXP-1", 5, 0)]).await;
    let mut sourcing = server.sourcing();
    let mut request = reserve_request(order("exp-1", "standard", vec![line("1", "EXP-1", 5)]));
    request.hold_ttl_seconds = 30;
    let r = sourcing
        .reserve(request)
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let expires = r.expires_at.unwrap();
    assert_eq!(expires.seconds * 1000, START_MILLIS + 30_000);
    assert_eq!(server.level("wh-getafe", "EXP-1").await, (0, 5, 5));

    server.clock.advance_secs(29);
    assert_eq!(server.level("wh-getafe", "EXP-1").await, (0, 5, 5));
    server.clock.advance_secs(1);
    // the background sweep returns the stock without any call touching the order
    let mut returned = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if server.level("wh-getafe", "EXP-1").await == (5, 5, 0) {
            returned = true;
            break;
        }
    }
    assert!(returned, "expired hold did not return its stock");
    let r = sourcing
        .get_reservation(pb::GetReservationRequest {
            order_id: "exp-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(state(&r), pb::ReservationState::Expired);
    let commit = sourcing
        .commit(pb::CommitRequest {
            order_id: "exp-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(commit.code(), Code::FailedPrecondition);
    assert!(commit.message().contains("expired"), "{commit:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn stale_repeated_and_bad_feed_updates() {
    use pb::StockUpdateKind::*;
    let server = TestServer::start().await;
    let updates = vec![
        update("wh-getafe", "FEED-1", Snapshot, 10, 1),
        update("wh-getafe", "FEED-1", Delta, 5, 2),
        update("wh-getafe", "FEED-1", Delta, 5, 2), // repeated
        update("wh-getafe", "FEED-1", Snapshot, 99, 1), // late
        update("wh-nowhere", "FEED-1", Snapshot, 1, 1), // unknown node
        update("wh-getafe", "FEED-1", Delta, -100, 3), // below zero
        update("wh-getafe", "", Snapshot, 1, 1),    // no sku
        update("wh-getafe", "FEED-1", Snapshot, 7, 0), // no sequence
        update("wh-getafe", "FEED-1", Unspecified, 7, 4),
        update("wh-getafe", "FEED-1", Delta, -3, 3),
        update("st-bilbao", "FEED-1", Snapshot, 2, 1),
    ];
    let summary = server
        .inventory()
        .push_stock(tokio_stream::iter(updates))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (summary.applied, summary.stale, summary.rejected),
        (4, 2, 5),
        "{summary:?}"
    );
    let reasons: Vec<(u64, &str)> = summary
        .rejections
        .iter()
        .map(|r| (r.index, r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8]
    );
    assert!(reasons[0].1.starts_with("node_id"), "{reasons:?}");
    assert!(reasons[1].1.contains("below zero"), "{reasons:?}");
    assert!(reasons[2].1.starts_with("sku"), "{reasons:?}");
    assert!(reasons[3].1.starts_with("sequence"), "{reasons:?}");
    assert!(reasons[4].1.starts_with("kind"), "{reasons:?}");
    assert_eq!(server.level("wh-getafe", "FEED-1").await, (12, 12, 0));
    assert_eq!(server.level("st-bilbao", "FEED-1").await, (2, 2, 0));

    // the same stream again changes nothing: every update is stale or rejected
    let again = server
        .inventory()
        .push_stock(tokio_stream::iter(vec![
            update("wh-getafe", "FEED-1", Snapshot, 10, 1),
            update("wh-getafe", "FEED-1", Delta, 5, 2),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.applied, again.stale), (0, 2));
    assert_eq!(server.level("wh-getafe", "FEED-1").await, (12, 12, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn a_large_stream_is_applied_in_order() {
    let server = TestServer::start().await;
    let n = 5_000u64;
    let updates =
        (1..=n).map(|seq| update("wh-getafe", "BIG-1", pb::StockUpdateKind::Delta, 1, seq));
    let summary = server
        .inventory()
        .push_stock(tokio_stream::iter(updates))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.applied, n);
    assert_eq!(server.level("wh-getafe", "BIG-1").await.1, n as i64);
    server.shutdown().await;
}

async fn invalid(server: &TestServer, request: pb::ReserveRequest) -> String {
    let status = server.sourcing().reserve(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status.message().to_owned()
}

#[tokio::test]
async fn bad_requests_name_the_field_and_change_nothing() {
    let server = TestServer::start().await;
    server.stock(&[("st-valencia", "BAD-1", 5, 0)]).await;
    let good = || order("bad-1", "standard", vec![line("1", "BAD-1", 1)]);

    let mut o = good();
    o.order_id = String::new();
    assert!(
        invalid(&server, reserve_request(o))
            .await
            .starts_with("order.order_id")
    );

    let mut o = good();
    o.lines.clear();
    assert!(
        invalid(&server, reserve_request(o))
            .await
            .starts_with("order.lines")
    );

    for q in [0, -2] {
        let mut o = good();
        o.lines[0].quantity = q;
        assert!(
            invalid(&server, reserve_request(o))
                .await
                .starts_with("order.lines[0].quantity")
        );
    }

    let mut o = good();
    o.lines.push(line("1", "BAD-1", 1));
    let m = invalid(&server, reserve_request(o)).await;
    assert!(
        m.starts_with("order.lines[1].line_id") && m.contains("duplicate"),
        "{m}"
    );

    let mut o = good();
    o.destination
        .as_mut()
        .unwrap()
        .location
        .as_mut()
        .unwrap()
        .lon = 181.0;
    assert!(
        invalid(&server, reserve_request(o))
            .await
            .starts_with("order.destination.location.lon")
    );

    let mut o = good();
    o.segment = "gold".into();
    let m = invalid(&server, reserve_request(o)).await;
    assert!(m.starts_with("order.segment") && m.contains("gold"), "{m}");

    let mut o = good();
    o.delivery_mode = pb::DeliveryMode::Pickup as i32;
    o.pickup_node_id = "st-atlantis".into();
    let m = invalid(&server, reserve_request(o)).await;
    assert!(
        m.starts_with("order.pickup_node_id") && m.contains("st-atlantis"),
        "{m}"
    );

    let mut o = good();
    o.delivery_mode = pb::DeliveryMode::Pickup as i32;
    o.pickup_node_id = "wh-getafe".into();
    let m = invalid(&server, reserve_request(o)).await;
    assert!(m.contains("does not serve pickups"), "{m}");

    let mut request = reserve_request(good());
    request.hold_ttl_seconds = 999_999;
    assert!(
        invalid(&server, request)
            .await
            .starts_with("hold_ttl_seconds")
    );

    let mut o = good();
    o.lines = (0..201).map(|i| line(&i.to_string(), "BAD-1", 1)).collect();
    let m = invalid(&server, reserve_request(o)).await;
    assert!(
        m.starts_with("order.lines") && m.contains("limit is 200"),
        "{m}"
    );

    let quote = server
        .sourcing()
        .quote(pb::QuoteRequest {
            order: None,
            strategy: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(quote.code(), Code::InvalidArgument);
    let strategy = server
        .sourcing()
        .quote(pb::QuoteRequest {
            order: Some(good()),
            strategy: 42,
        })
        .await
        .unwrap_err();
    assert!(strategy.message().starts_with("strategy"), "{strategy:?}");

    // nothing was held and no reservation exists
    assert_eq!(server.level("st-valencia", "BAD-1").await, (5, 5, 0));
    let missing = server
        .sourcing()
        .get_reservation(pb::GetReservationRequest {
            order_id: "bad-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let availability = server
        .inventory()
        .get_availability(pb::GetAvailabilityRequest {
            skus: vec![],
            segment: String::new(),
        })
        .await
        .unwrap_err();
    assert!(availability.message().starts_with("skus"));
    server.shutdown().await;
}

#[tokio::test]
async fn no_plan_under_the_rules_is_a_failed_precondition() {
    let server = TestServer::start().await;
    server.stock(&[("wh-getafe", "SHORT-1", 2, 0)]).await;
    // vip refuses partial plans
    let status = server
        .sourcing()
        .reserve(reserve_request(order(
            "short-1",
            "vip",
            vec![line("1", "SHORT-1", 3)],
        )))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("SHORT-1 wants 3, 2 available to segment vip"),
        "{status:?}"
    );
    assert_eq!(server.level("wh-getafe", "SHORT-1").await, (2, 2, 0));
    // standard backorders the rest
    let r = server
        .sourcing()
        .reserve(reserve_request(order(
            "short-2",
            "standard",
            vec![line("1", "SHORT-1", 3)],
        )))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let plan = r.plan.unwrap();
    assert_eq!(plan.unfilled[0].quantity, 1);
    assert_eq!(server.level("wh-getafe", "SHORT-1").await, (0, 2, 2));
    server.shutdown().await;
}

#[tokio::test]
async fn segments_see_only_their_nodes_and_safety_stock() {
    let server = TestServer::start().await;
    server
        .stock(&[
            ("wh-getafe", "SEG-1", 10, 4),
            ("st-valencia", "SEG-1", 3, 1),
        ])
        .await;
    let ask = |segment: &str| pb::GetAvailabilityRequest {
        skus: vec!["SEG-1".into()],
        segment: segment.into(),
    };
    let mut inv = server.inventory();
    let all = inv.get_availability(ask("")).await.unwrap().into_inner();
    assert_eq!(all.skus[0].ats, 6 + 2);
    let vip = inv.get_availability(ask("vip")).await.unwrap().into_inner();
    assert_eq!(vip.skus[0].ats, 10 + 3);
    let marketplace = inv
        .get_availability(ask("marketplace"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(marketplace.skus[0].ats, 6);
    assert_eq!(marketplace.skus[0].nodes.len(), 1);
    let unknown = inv.get_availability(ask("gold")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    server.shutdown().await;
}

#[tokio::test]
async fn list_nodes_reports_the_network() {
    let server = TestServer::start().await;
    let all = server
        .network()
        .list_nodes(pb::ListNodesRequest { kind: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.nodes.len(), 31);
    assert_eq!(all.segments, vec!["marketplace", "standard", "vip"]);
    let stores = server
        .network()
        .list_nodes(pb::ListNodesRequest {
            kind: pb::NodeKind::Store as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stores.nodes.len(), 22);
    assert!(stores.nodes.iter().all(|n| n.can_pickup));
    server.shutdown().await;
}

#[tokio::test]
async fn pickup_orders_are_sourced_at_the_pickup_store() {
    let server = TestServer::start().await;
    server
        .stock(&[
            ("st-bilbao", "PICK-1", 2, 0),
            ("wh-zaragoza", "PICK-1", 50, 0),
        ])
        .await;
    let mut o = order("pick-1", "standard", vec![line("1", "PICK-1", 2)]);
    o.delivery_mode = pb::DeliveryMode::Pickup as i32;
    o.pickup_node_id = "st-bilbao".into();
    let plan = common::quoted_plan(server.sourcing(), o).await;
    assert_eq!(plan.shipments.len(), 1);
    assert_eq!(plan.shipments[0].node_id, "st-bilbao");
    assert_eq!(plan.shipments[0].distance_km, 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let mut config = demo_config();
    config.settings.server.max_message_bytes = 2_000;
    let server = TestServer::start_with(config).await;
    let updates = (1..200)
        .map(|seq| update("wh-getafe", "SIZE-1", pb::StockUpdateKind::Delta, 1, seq))
        .collect();
    let status = server
        .inventory()
        .set_stock(pb::SetStockRequest { updates })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(server.level("wh-getafe", "SIZE-1").await, (0, 0, 0));
    server.shutdown().await;
}

/// The demo with vip keeping 3 units of every node's stock from worse segments, and standard
/// keeping a quarter of on hand from marketplace.
fn protected_config() -> dom_router::config::Config {
    use dom_router::store::Protection;
    let mut config = demo_config();
    let segments = config.segments.names().into_iter().map(|name| {
        let mut s = config.segments.get(&name).unwrap().clone();
        s.protect = match name.as_str() {
            "vip" => Protection {
                units: 3,
                share: 0.0,
            },
            "standard" => Protection {
                units: 0,
                share: 0.25,
            },
            _ => Protection::default(),
        };
        s
    });
    config.segments = dom_router::domain::Segments::new(segments.collect::<Vec<_>>());
    config
}

#[tokio::test]
async fn better_segments_keep_their_protected_units_from_worse_ones() {
    let server = TestServer::start_with(protected_config()).await;
    server.stock(&[("wh-getafe", "PROT-1", 8, 0)]).await;
    let ats = |segment: &'static str| {
        let server = &server;
        async move {
            let a = server.availability("PROT-1", segment).await;
            (a.ats, a.nodes[0].ats)
        }
    };
    // vip sees all 8; standard all but vip's 3; marketplace also less a quarter for standard
    assert_eq!(ats("vip").await, (8, 8));
    assert_eq!(ats("standard").await, (5, 5));
    assert_eq!(ats("marketplace").await, (3, 3));
    // a marketplace order for 4 gets 3, and its plan says what bound it
    let reserved = server
        .sourcing()
        .reserve(reserve_request(order(
            "prot-m",
            "marketplace",
            vec![line("1", "PROT-1", 4)],
        )))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    let plan = reserved.plan.unwrap();
    assert_eq!(plan.shipments[0].lines[0].quantity, 3);
    assert!(
        plan.binding.iter().any(|b| b
            == "stock of PROT-1 at wh-getafe used up (3 of 3 available; 5 more kept for segments vip, standard)"),
        "{:?}",
        plan.binding
    );
    // every segment's holds count against the same free stock
    assert_eq!(ats("vip").await, (5, 5));
    assert_eq!(ats("standard").await, (2, 2));
    assert_eq!(ats("marketplace").await, (0, 0));
    // a node with nothing left but kept units says so
    let unused = server
        .sourcing()
        .quote(pb::QuoteRequest {
            order: Some(order(
                "prot-m2",
                "marketplace",
                vec![line("1", "PROT-1", 1)],
            )),
            strategy: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(unused.unfilled[0].quantity, 1);
    let getafe = unused
        .unused_nodes
        .iter()
        .find(|n| n.node_id == "wh-getafe")
        .unwrap();
    assert_eq!(
        (getafe.reason, getafe.detail.as_str()),
        (
            pb::NodeReason::NoStock as i32,
            "no stock of PROT-1 available to segment marketplace: 5 unit(s) kept for segments vip, standard"
        )
    );
    // a standard order for 3 cannot dig into vip's units: it waits for one
    let standard = server
        .sourcing()
        .quote(pb::QuoteRequest {
            order: Some(order("prot-s", "standard", vec![line("1", "PROT-1", 3)])),
            strategy: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    let shipped: i64 = standard
        .shipments
        .iter()
        .flat_map(|s| &s.lines)
        .map(|l| l.quantity)
        .sum();
    assert_eq!(shipped, 2);
    // vip takes everything left, protected units included
    server
        .sourcing()
        .reserve(reserve_request(order(
            "prot-v",
            "vip",
            vec![line("1", "PROT-1", 5)],
        )))
        .await
        .unwrap();
    assert_eq!(ats("vip").await, (0, 0));
    // and what the marketplace order holds stays its own
    let kept = server
        .sourcing()
        .get_reservation(pb::GetReservationRequest {
            order_id: "prot-m".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(
        (kept.state, kept.allocations[0].quantity),
        (pb::ReservationState::Held as i32, 3)
    );
    server.shutdown().await;
}
