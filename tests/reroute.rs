//! Reroute end to end: the real server on loopback (the demo network, in memory), the
//! generated tonic client.

mod common;

use common::*;
use dom_router::api::pb;
use tonic::Code;

fn reroute(
    order_id: &str,
    node_id: &str,
    lines: &[(&str, i64)],
    reason: pb::RerouteReason,
    reroute_id: &str,
) -> pb::RerouteRequest {
    pb::RerouteRequest {
        order_id: order_id.into(),
        node_id: node_id.into(),
        lines: lines
            .iter()
            .map(|(line_id, quantity)| pb::RerouteLine {
                line_id: (*line_id).into(),
                quantity: *quantity,
            })
            .collect(),
        reason: reason as i32,
        reroute_id: reroute_id.into(),
    }
}

/// A reroute that must succeed, and its answer.
async fn rerouted(
    sourcing: &mut SourcingClient<tonic::transport::Channel>,
    request: pb::RerouteRequest,
) -> pb::RerouteResponse {
    sourcing.reroute(request).await.unwrap().into_inner()
}

async fn reserve(server: &TestServer, order: pb::Order) -> pb::Reservation {
    server
        .sourcing()
        .reserve(pb::ReserveRequest {
            order: Some(order),
            hold_ttl_seconds: 0,
            strategy: pb::Strategy::Nearest as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap()
}

/// Units held per node.
fn held(r: &pb::Reservation) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for a in &r.allocations {
        let units = a.quantity - a.shipped - a.released;
        match out.iter_mut().find(|(n, _)| *n == a.node_id) {
            Some((_, u)) => *u += units,
            None => out.push((a.node_id.clone(), units)),
        }
    }
    out.retain(|(_, u)| *u > 0);
    out.sort();
    out
}

fn fates(outcomes: &[pb::UnitOutcome]) -> Vec<(String, i64, pb::UnitFate, String)> {
    outcomes
        .iter()
        .map(|o| {
            (
                o.line_id.clone(),
                o.units,
                pb::UnitFate::try_from(o.fate).unwrap(),
                o.node_id.clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_rejected_order_goes_to_the_next_node_and_keeps_its_history() {
    let server = TestServer::start().await;
    server
        .stock(&[
            ("st-valencia", "RR-1", 4, 0),
            ("st-alicante", "RR-1", 5, 0),
            ("wh-getafe", "RR-1", 20, 0),
        ])
        .await;
    let r = reserve(
        &server,
        order("rr-1", "standard", vec![line("1", "RR-1", 3)]),
    )
    .await;
    assert_eq!(held(&r), vec![("st-valencia".into(), 3)]);
    let mut sourcing = server.sourcing();
    let request = reroute(
        "rr-1",
        "st-valencia",
        &[],
        pb::RerouteReason::StoreRejected,
        "rj-1",
    );
    let answer = rerouted(&mut sourcing, request.clone()).await;
    assert!(answer.rerouted);
    // nearest next: Alicante
    assert_eq!(
        fates(&answer.outcomes),
        vec![(
            "1".into(),
            3,
            pb::UnitFate::Rerouted,
            "st-alicante".to_owned()
        )]
    );
    let r = answer.reservation.unwrap();
    assert_eq!(held(&r), vec![("st-alicante".into(), 3)]);
    assert_eq!(
        pb::ReservationState::try_from(r.state).unwrap(),
        pb::ReservationState::Held
    );
    let valencia = r
        .allocations
        .iter()
        .find(|a| a.node_id == "st-valencia")
        .unwrap();
    assert_eq!((valencia.quantity, valencia.rejected), (0, 3));
    // a rejection gives the units back to the store's stock
    assert_eq!(server.level("st-valencia", "RR-1").await, (4, 4, 0));
    assert_eq!(server.level("st-alicante", "RR-1").await, (2, 5, 3));
    // the history: the first decision, then the reroute
    let kinds: Vec<_> = r
        .history
        .iter()
        .map(|d| pb::decision::Kind::try_from(d.kind).unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![pb::decision::Kind::Reserved, pb::decision::Kind::Rerouted]
    );
    let last = &r.history[1];
    assert_eq!(last.reroute_id, "rj-1");
    assert_eq!(last.node_id, "st-valencia");
    assert_eq!(
        pb::RerouteReason::try_from(last.reason).unwrap(),
        pb::RerouteReason::StoreRejected
    );
    assert!(!last.rules_version.is_empty());
    assert_eq!(
        last.summary,
        "3 units at st-valencia (store_rejected): 3 rerouted to st-alicante"
    );
    let read = sourcing
        .get_reservation(pb::GetReservationRequest {
            order_id: "rr-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(read, r);
    // the same reroute again: the same answer, nothing moved
    let again = rerouted(&mut sourcing, request.clone()).await;
    assert!(!again.rerouted);
    assert_eq!(again.outcomes, answer.outcomes);
    assert_eq!(server.level("st-alicante", "RR-1").await, (2, 5, 3));
    // the same id for something else is refused
    let mut other = request.clone();
    other.reason = pb::RerouteReason::Damaged as i32;
    let e = sourcing.reroute(other).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    // Alicante turns it down too: never back to Valencia, though it has the stock and is
    // nearest
    let answer = rerouted(
        &mut sourcing,
        reroute(
            "rr-1",
            "st-alicante",
            &[("1", 3)],
            pb::RerouteReason::Damaged,
            "rj-2",
        ),
    )
    .await;
    assert_eq!(
        fates(&answer.outcomes),
        vec![(
            "1".into(),
            3,
            pb::UnitFate::Rerouted,
            "wh-getafe".to_owned()
        )]
    );
    // damaged units leave on hand
    assert_eq!(server.level("st-alicante", "RR-1").await, (2, 2, 0));
    assert_eq!(server.level("wh-getafe", "RR-1").await, (17, 20, 3));
    assert_eq!(answer.reservation.unwrap().history.len(), 3);
}

#[tokio::test]
async fn what_no_node_can_ship_waits_or_is_cancelled_by_the_segment() {
    let server = TestServer::start().await;
    server
        .stock(&[("wh-getafe", "RR-2", 10, 0), ("wh-sabadell", "RR-3", 10, 0)])
        .await;
    let mut sourcing = server.sourcing();
    // standard backorders: what a reserve cannot place waits from the start
    let r = reserve(
        &server,
        order("rr-2w", "standard", vec![line("1", "RR-2", 12)]),
    )
    .await;
    assert_eq!(held(&r), vec![("wh-getafe".into(), 10)]);
    assert_eq!(r.waiting.len(), 1);
    assert_eq!(
        (r.waiting[0].line_id.as_str(), r.waiting[0].units),
        ("1", 2)
    );
    sourcing
        .release(pb::ReleaseRequest {
            order_id: "rr-2w".into(),
            line_ids: vec![],
        })
        .await
        .unwrap();
    // and so do the units of a reroute no node can take
    reserve(
        &server,
        order("rr-2a", "standard", vec![line("1", "RR-2", 4)]),
    )
    .await;
    let answer = rerouted(
        &mut sourcing,
        reroute(
            "rr-2a",
            "wh-getafe",
            &[("1", 4)],
            pb::RerouteReason::ShortPick,
            "x",
        ),
    )
    .await;
    assert_eq!(
        fates(&answer.outcomes),
        vec![("1".into(), 4, pb::UnitFate::Waiting, String::new())]
    );
    let r = answer.reservation.unwrap();
    assert_eq!(r.waiting.len(), 1);
    assert_eq!(
        (r.waiting[0].line_id.as_str(), r.waiting[0].units),
        ("1", 4)
    );
    assert_eq!(server.level("wh-getafe", "RR-2").await, (6, 6, 0));
    // vip rejects orders it cannot fill, but an order cannot be refused after the fact: the
    // units are cancelled, the rest of the order stands
    reserve(
        &server,
        order(
            "rr-2b",
            "vip",
            vec![line("1", "RR-2", 2), line("2", "RR-3", 1)],
        ),
    )
    .await;
    let answer = rerouted(
        &mut sourcing,
        reroute(
            "rr-2b",
            "wh-getafe",
            &[],
            pb::RerouteReason::NodeUnavailable,
            "x",
        ),
    )
    .await;
    assert_eq!(
        fates(&answer.outcomes),
        vec![("1".into(), 2, pb::UnitFate::Cancelled, String::new())]
    );
    let r = answer.reservation.unwrap();
    assert_eq!(held(&r), vec![("wh-sabadell".into(), 1)]);
    assert_eq!(
        pb::ReservationState::try_from(r.state).unwrap(),
        pb::ReservationState::Held
    );
    assert_eq!(server.level("wh-getafe", "RR-2").await, (6, 6, 0));
}

#[tokio::test]
async fn parcels_still_active_count_against_max_shipments() {
    let server = TestServer::start().await;
    // standard allows two parcels; the order takes two, one per sku
    server
        .stock(&[("wh-getafe", "RR-4", 2, 0), ("wh-sabadell", "RR-5", 1, 0)])
        .await;
    let r = reserve(
        &server,
        order(
            "rr-4",
            "standard",
            vec![line("1", "RR-4", 2), line("2", "RR-5", 1)],
        ),
    )
    .await;
    assert_eq!(
        held(&r),
        vec![("wh-getafe".into(), 2), ("wh-sabadell".into(), 1)]
    );
    server.stock(&[("wh-zaragoza", "RR-4", 9, 0)]).await;
    let mut sourcing = server.sourcing();
    // one of Getafe's two units: Getafe still ships the other, so no parcel is left
    let answer = rerouted(
        &mut sourcing,
        reroute(
            "rr-4",
            "wh-getafe",
            &[("1", 1)],
            pb::RerouteReason::Damaged,
            "a",
        ),
    )
    .await;
    assert_eq!(
        fates(&answer.outcomes),
        vec![("1".into(), 1, pb::UnitFate::Waiting, String::new())]
    );
    assert!(
        answer.plan.unwrap().binding[0].contains("no parcel left"),
        "the plan says why"
    );
    // the last one: Getafe ships nothing more, its parcel is free for Zaragoza
    let answer = rerouted(
        &mut sourcing,
        reroute("rr-4", "wh-getafe", &[], pb::RerouteReason::Damaged, "b"),
    )
    .await;
    assert_eq!(
        fates(&answer.outcomes),
        vec![(
            "1".into(),
            1,
            pb::UnitFate::Rerouted,
            "wh-zaragoza".to_owned()
        )]
    );
    assert_eq!(
        held(&answer.reservation.unwrap()),
        vec![("wh-sabadell".into(), 1), ("wh-zaragoza".into(), 1)]
    );
}

#[tokio::test]
async fn bad_reroutes_name_the_problem_and_change_nothing() {
    let server = TestServer::start().await;
    server.stock(&[("wh-getafe", "RR-6", 10, 0)]).await;
    reserve(
        &server,
        order("rr-6", "standard", vec![line("1", "RR-6", 3)]),
    )
    .await;
    reserve(
        &server,
        order("rr-6b", "standard", vec![line("1", "RR-6", 1)]),
    )
    .await;
    server.stock(&[("wh-zaragoza", "RR-6", 10, 0)]).await;
    let mut sourcing = server.sourcing();
    sourcing
        .release(pb::ReleaseRequest {
            order_id: "rr-6b".into(),
            line_ids: vec![],
        })
        .await
        .unwrap();
    let before = (
        server.level("wh-getafe", "RR-6").await,
        server.level("wh-zaragoza", "RR-6").await,
    );
    use pb::RerouteReason as R;
    let cases: Vec<(pb::RerouteRequest, Code, &str)> = vec![
        (
            reroute("nope", "wh-getafe", &[], R::Other, "1"),
            Code::NotFound,
            "no reservation for order",
        ),
        (
            reroute("rr-6", "wh-getafe", &[], R::Unspecified, "1"),
            Code::InvalidArgument,
            "reason: must be given",
        ),
        (
            pb::RerouteRequest {
                reason: 42,
                ..reroute("rr-6", "wh-getafe", &[], R::Other, "1")
            },
            Code::InvalidArgument,
            "reason: unknown reason 42",
        ),
        (
            reroute("rr-6", "wh-getafe", &[], R::Other, ""),
            Code::InvalidArgument,
            "reroute_id: must not be empty",
        ),
        (
            reroute("rr-6", "", &[], R::Other, "1"),
            Code::InvalidArgument,
            "node_id: must not be empty",
        ),
        (
            reroute("rr-6", "wh-getafe", &[("1", 0)], R::Other, "1"),
            Code::InvalidArgument,
            "lines[0].quantity: 0 is out of range",
        ),
        (
            reroute("rr-6", "wh-getafe", &[("1", 1), ("1", 1)], R::Other, "1"),
            Code::InvalidArgument,
            "lines[1].line_id: line \"1\" is listed twice",
        ),
        (
            reroute("rr-6", "wh-getafe", &[("9", 1)], R::Other, "1"),
            Code::InvalidArgument,
            "lines[0].line_id: order \"rr-6\" has no line \"9\"",
        ),
        (
            reroute("rr-6", "wh-getafe", &[("1", 4)], R::Other, "1"),
            Code::FailedPrecondition,
            "lines[0].quantity: 4 is more than the 3 units of line \"1\" outstanding at node \"wh-getafe\"",
        ),
        (
            reroute("rr-6", "wh-zaragoza", &[], R::Other, "1"),
            Code::FailedPrecondition,
            "node \"wh-zaragoza\" has no units of order \"rr-6\" outstanding",
        ),
        (
            reroute("rr-6b", "wh-getafe", &[], R::Other, "1"),
            Code::FailedPrecondition,
            "order \"rr-6b\" is released; only a held or committed order is rerouted",
        ),
    ];
    for (request, code, message) in cases {
        let e = sourcing.reroute(request.clone()).await.unwrap_err();
        assert_eq!(e.code(), code, "{request:?}: {e:?}");
        assert!(
            e.message().contains(message),
            "{request:?}: {:?} lacks {message:?}",
            e.message()
        );
    }
    assert_eq!(
        (
            server.level("wh-getafe", "RR-6").await,
            server.level("wh-zaragoza", "RR-6").await,
        ),
        before
    );
    let r = sourcing
        .get_reservation(pb::GetReservationRequest {
            order_id: "rr-6".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(r.history.len(), 1);
}

/// The README's example, on the demo stock: Getafe short-picks one of web-1001's two units.
#[tokio::test]
async fn the_readme_example_goes_as_it_says() {
    let mut config = demo_config();
    config.settings.store.seed_stock = true;
    let server = TestServer::start_with(config).await;
    let mut sourcing = server.sourcing();
    let mut web = order("web-1001", "vip", vec![line("1", "APP-0003", 2)]);
    web.destination = Some(pb::Destination {
        location: Some(pb::GeoPoint {
            lat: 40.4168,
            lon: -3.7038,
        }),
        country: "ES".into(),
    });
    let r = sourcing
        .reserve(pb::ReserveRequest {
            order: Some(web),
            hold_ttl_seconds: 600,
            strategy: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(held(&r), vec![("wh-getafe".into(), 2)]);
    sourcing
        .commit(pb::CommitRequest {
            order_id: "web-1001".into(),
        })
        .await
        .unwrap();
    let answer = rerouted(
        &mut sourcing,
        reroute(
            "web-1001",
            "wh-getafe",
            &[("1", 1)],
            pb::RerouteReason::ShortPick,
            "getafe-pick-17",
        ),
    )
    .await;
    let r = answer.reservation.unwrap();
    let summaries: Vec<&str> = r.history.iter().map(|d| d.summary.as_str()).collect();
    assert_eq!(
        summaries,
        vec![
            "2 units planned from wh-getafe",
            "1 unit at wh-getafe (short_pick): 1 rerouted to 3pl-alcala"
        ]
    );
    assert_eq!(
        held(&r),
        vec![("3pl-alcala".into(), 1), ("wh-getafe".into(), 1)]
    );
}

#[tokio::test]
async fn kit_lines_rerouted_together_ship_together_and_a_partial_segment_cancels() {
    let server = TestServer::start().await;
    // the kit's two skus sit together at Zaragoza and Sevilla; one of them also at the Valencia
    // store, nearest, which cannot ship the other
    server
        .stock(&[
            ("wh-zaragoza", "KIT-A", 5, 0),
            ("wh-zaragoza", "KIT-B", 5, 0),
            ("wh-sevilla", "KIT-A", 5, 0),
            ("wh-sevilla", "KIT-B", 5, 0),
            ("st-valencia", "KIT-A", 5, 0),
        ])
        .await;
    let mut kit = vec![line("1", "KIT-A", 1), line("2", "KIT-B", 1)];
    for l in &mut kit {
        l.group = "k".into();
    }
    let r = reserve(&server, order("kit-1", "standard", kit)).await;
    let first = held(&r);
    assert_eq!(first.len(), 1, "a kit ships from one node: {first:?}");
    let from = first[0].0.clone();
    let mut sourcing = server.sourcing();
    let answer = rerouted(
        &mut sourcing,
        reroute(
            "kit-1",
            &from,
            &[],
            pb::RerouteReason::StoreRejected,
            "kit-r",
        ),
    )
    .await;
    // both lines go to the one other node with both, never split by the store nearer by
    let nodes: Vec<String> = fates(&answer.outcomes)
        .into_iter()
        .map(|(_, _, fate, node)| {
            assert_eq!(fate, pb::UnitFate::Rerouted);
            node
        })
        .collect();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0], nodes[1], "{nodes:?}");
    assert_ne!(nodes[0], from);
    assert_ne!(nodes[0], "st-valencia");
    // a marketplace order lets units go unfilled: what no other node ships is cancelled
    server.stock(&[("wh-zaragoza", "MKT-1", 3, 0)]).await;
    reserve(
        &server,
        order("mkt-1", "marketplace", vec![line("1", "MKT-1", 2)]),
    )
    .await;
    let answer = rerouted(
        &mut sourcing,
        reroute(
            "mkt-1",
            "wh-zaragoza",
            &[],
            pb::RerouteReason::Damaged,
            "mkt-r",
        ),
    )
    .await;
    assert_eq!(
        fates(&answer.outcomes),
        vec![("1".into(), 2, pb::UnitFate::Cancelled, String::new())]
    );
    let r = answer.reservation.unwrap();
    assert!(r.waiting.is_empty());
    assert_eq!(
        pb::ReservationState::try_from(r.state).unwrap(),
        pb::ReservationState::Released
    );
    // damaged units left on hand with the allocation
    assert_eq!(server.level("wh-zaragoza", "MKT-1").await, (1, 1, 0));
    server.shutdown().await;
}
