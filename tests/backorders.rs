//! Backorders that fill, end to end: the real server on loopback (the demo network, in memory),
//! the generated tonic client. Units no node can ship wait; supply fills them by segment
//! priority, then by how long they have waited; units past `backorder_max_days` are cancelled.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dom_router::api::pb;
use dom_router::domain::{Segments, UnfilledPolicy};

/// The demo config with marketplace orders backordered too (priority 80, behind standard's 50),
/// and standard's units waiting at most `max_days` days when given.
fn config(max_days: Option<u32>) -> dom_router::config::Config {
    let mut config = demo_config();
    let segments: Vec<_> = config
        .segments
        .names()
        .into_iter()
        .map(|name| {
            let mut s = config.segments.get(&name).unwrap().clone();
            match name.as_str() {
                "marketplace" => s.unfilled = UnfilledPolicy::Backorder,
                "standard" => s.backorder_max_days = max_days,
                _ => {}
            }
            s
        })
        .collect();
    config.segments = Segments::new(segments);
    config
}

async fn reserve(server: &TestServer, id: &str, segment: &str, units: i64) -> pb::Reservation {
    server
        .sourcing()
        .reserve(reserve_request(order(
            id,
            segment,
            vec![line("l1", "BO-1", units)],
        )))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap()
}

async fn reservation(server: &TestServer, id: &str) -> pb::Reservation {
    server
        .sourcing()
        .get_reservation(pb::GetReservationRequest {
            order_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap()
}

fn waiting(r: &pb::Reservation) -> i64 {
    r.waiting.iter().map(|w| w.units).sum()
}

fn held(r: &pb::Reservation) -> i64 {
    r.allocations
        .iter()
        .map(|a| a.quantity - a.shipped - a.released)
        .sum()
}

/// Waits until `order` has `units` waiting, for up to five seconds; the reservation then.
async fn until_waiting(server: &TestServer, order: &str, units: i64) -> pb::Reservation {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        let r = reservation(server, order).await;
        if waiting(&r) == units || Instant::now() > give_up {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn waiting_by_segment(server: &TestServer) -> Vec<(String, i64)> {
    let a = server.availability("BO-1", "").await;
    a.waiting
        .iter()
        .map(|w| (w.segment.clone(), w.units))
        .collect()
}

#[tokio::test]
async fn supply_fills_waiting_orders_by_priority_then_age() {
    let server = TestServer::start_with(config(None)).await;
    // nothing in stock: every unit waits, the marketplace order first of all
    let m1 = reserve(&server, "m1", "marketplace", 2).await;
    assert_eq!((held(&m1), waiting(&m1)), (0, 2));
    assert_eq!(m1.state, pb::ReservationState::Held as i32);
    server.clock.advance_secs(1);
    reserve(&server, "s1", "standard", 2).await;
    server.clock.advance_secs(1);
    reserve(&server, "s2", "standard", 2).await;
    assert_eq!(
        waiting_by_segment(&server).await,
        vec![("marketplace".into(), 2), ("standard".into(), 4)]
    );
    // three units arrive: the standard orders go first (a better priority), the older first
    server.stock(&[("wh-zaragoza", "BO-1", 3, 0)]).await;
    let s1 = until_waiting(&server, "s1", 0).await;
    let s2 = until_waiting(&server, "s2", 1).await;
    assert_eq!((held(&s1), waiting(&s1)), (2, 0));
    assert_eq!((held(&s2), waiting(&s2)), (1, 1));
    let m1 = reservation(&server, "m1").await;
    assert_eq!((held(&m1), waiting(&m1)), (0, 2), "{m1:?}");
    assert_eq!(server.level("wh-zaragoza", "BO-1").await, (0, 3, 3));
    // the fill is in the history, explained
    let last = s1.history.last().unwrap();
    assert_eq!(last.kind, pb::decision::Kind::Filled as i32);
    assert_eq!(last.outcomes.len(), 1);
    assert_eq!(last.outcomes[0].fate, pb::UnitFate::Filled as i32);
    assert_eq!(last.outcomes[0].node_id, "wh-zaragoza");
    assert_eq!(last.outcomes[0].units, 2);
    assert!(
        last.summary.contains("filled from wh-zaragoza"),
        "{}",
        last.summary
    );
    assert_eq!(
        waiting_by_segment(&server).await,
        vec![("marketplace".into(), 2), ("standard".into(), 1)]
    );
    // three more: the last standard unit, then the marketplace order
    server.stock(&[("wh-zaragoza", "BO-1", 6, 0)]).await;
    let m1 = until_waiting(&server, "m1", 0).await;
    assert_eq!((held(&m1), waiting(&m1)), (2, 0));
    let s2 = reservation(&server, "s2").await;
    assert_eq!((held(&s2), waiting(&s2)), (2, 0));
    assert_eq!(server.level("wh-zaragoza", "BO-1").await, (0, 6, 6));
    assert!(waiting_by_segment(&server).await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn no_fills_with_the_fill_interval_at_zero() {
    let mut config = config(None);
    config.settings.holds.fill_interval_ms = 0;
    let server = TestServer::start_with(config).await;
    reserve(&server, "w", "standard", 2).await;
    server.stock(&[("wh-zaragoza", "BO-1", 5, 0)]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let w = reservation(&server, "w").await;
    assert_eq!((held(&w), waiting(&w)), (0, 2));
    assert_eq!(server.level("wh-zaragoza", "BO-1").await, (5, 5, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn units_given_back_fill_an_order_waiting() {
    let server = TestServer::start_with(config(None)).await;
    server.stock(&[("wh-zaragoza", "BO-1", 2, 0)]).await;
    let first = reserve(&server, "a", "standard", 2).await;
    assert_eq!(held(&first), 2);
    server.clock.advance_secs(1);
    let second = reserve(&server, "b", "standard", 2).await;
    assert_eq!(waiting(&second), 2);
    // the first order lets its units go: they fill the second
    server
        .sourcing()
        .release(pb::ReleaseRequest {
            order_id: "a".into(),
            line_ids: Vec::new(),
        })
        .await
        .unwrap();
    let b = until_waiting(&server, "b", 0).await;
    assert_eq!(held(&b), 2);
    assert_eq!(server.level("wh-zaragoza", "BO-1").await, (0, 2, 2));
    server.shutdown().await;
}

#[tokio::test]
async fn units_an_expiry_or_a_reroute_gives_back_fill_an_order_waiting() {
    let server = TestServer::start_with(config(None)).await;
    server.stock(&[("wh-zaragoza", "BO-1", 2, 0)]).await;
    // a hold of a minute takes both units; a committed order waits for them
    let mut short = reserve_request(order("a", "standard", vec![line("l1", "BO-1", 2)]));
    short.hold_ttl_seconds = 60;
    server.sourcing().reserve(short).await.unwrap();
    reserve(&server, "b", "standard", 2).await;
    commit(&server, "b").await;
    server.clock.advance_secs(61);
    let b = until_waiting(&server, "b", 0).await;
    assert_eq!(held(&b), 2, "the expired hold's units went to b");
    // one unit at Getafe, held by c; d waits; Getafe turns c down and gives the unit back
    server.stock(&[("wh-getafe", "BO-2", 1, 0)]).await;
    let c = server
        .sourcing()
        .reserve(reserve_request(order(
            "c",
            "standard",
            vec![line("l1", "BO-2", 1)],
        )))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(held(&c), 1);
    server.clock.advance_secs(1);
    let d = server
        .sourcing()
        .reserve(reserve_request(order(
            "d",
            "standard",
            vec![line("l1", "BO-2", 1)],
        )))
        .await
        .unwrap()
        .into_inner()
        .reservation
        .unwrap();
    assert_eq!(waiting(&d), 1);
    commit(&server, "d").await;
    server
        .sourcing()
        .reroute(pb::RerouteRequest {
            order_id: "c".into(),
            node_id: "wh-getafe".into(),
            lines: Vec::new(),
            reason: pb::RerouteReason::StoreRejected as i32,
            reroute_id: "c-r".into(),
        })
        .await
        .unwrap();
    let d = until_waiting(&server, "d", 0).await;
    assert_eq!(held(&d), 1, "the unit given back went to d");
    let c = reservation(&server, "c").await;
    assert_eq!(
        (held(&c), waiting(&c)),
        (0, 1),
        "c may not go back to Getafe"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn fills_keep_what_a_better_segment_protects() {
    // vip keeps 3 units of every node's stock from standard and marketplace
    let mut config = config(None);
    let segments: Vec<_> = config
        .segments
        .names()
        .into_iter()
        .map(|name| {
            let mut s = config.segments.get(&name).unwrap().clone();
            if name == "vip" {
                s.protect.units = 3;
            }
            s
        })
        .collect();
    config.segments = Segments::new(segments);
    let server = TestServer::start_with(config).await;
    reserve(&server, "p", "standard", 2).await;
    // three units: all kept for vip, so nothing is filled
    server.stock(&[("wh-zaragoza", "BO-1", 3, 0)]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = reservation(&server, "p").await;
    assert_eq!((held(&p), waiting(&p)), (0, 2));
    // five: two beyond what vip keeps
    server.stock(&[("wh-zaragoza", "BO-1", 5, 0)]).await;
    let p = until_waiting(&server, "p", 0).await;
    assert_eq!(held(&p), 2);
    assert_eq!(server.level("wh-zaragoza", "BO-1").await, (3, 5, 2));
    server.shutdown().await;
}

async fn commit(server: &TestServer, id: &str) {
    server
        .sourcing()
        .commit(pb::CommitRequest {
            order_id: id.into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn units_waiting_past_max_days_are_cancelled_and_expire_with_their_hold() {
    let server = TestServer::start_with(config(Some(2))).await;
    // a committed order never expires; its units wait two days at most
    reserve(&server, "c", "standard", 3).await;
    server
        .sourcing()
        .commit(pb::CommitRequest {
            order_id: "c".into(),
        })
        .await
        .unwrap();
    // a held order's units wait as long as its hold
    reserve(&server, "h", "standard", 1).await;
    server.clock.advance_secs(2 * 86_400 - 1);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let c = reservation(&server, "c").await;
    assert_eq!(waiting(&c), 3, "not yet past two days");
    let h = reservation(&server, "h").await;
    assert_eq!(h.state, pb::ReservationState::Expired as i32);
    assert_eq!(waiting(&h), 0, "units waiting expire with the hold");
    server.clock.advance_secs(1);
    let c = until_waiting(&server, "c", 0).await;
    assert_eq!(waiting(&c), 0);
    let last = c.history.last().unwrap();
    assert_eq!(last.kind, pb::decision::Kind::Cancelled as i32);
    assert_eq!(last.outcomes[0].fate, pb::UnitFate::Cancelled as i32);
    assert_eq!(last.outcomes[0].units, 3);
    // nothing held and nothing waiting: the order is settled
    assert_eq!(c.state, pb::ReservationState::Released as i32);
    // supply later fills nothing
    server.stock(&[("wh-zaragoza", "BO-1", 5, 0)]).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.level("wh-zaragoza", "BO-1").await, (5, 5, 0));
    server.shutdown().await;
}

fn inbound(node: &str, units: i64, date: &str, reference: &str) -> pb::StockUpdate {
    pb::StockUpdate {
        node_id: node.into(),
        sku: "BO-1".into(),
        kind: pb::StockUpdateKind::Inbound as i32,
        quantity: units,
        sequence: next_sequence(),
        expected_date: date.into(),
        reference: reference.into(),
        ..Default::default()
    }
}

async fn quote_promise(server: &TestServer, segment: &str, units: i64) -> Vec<String> {
    let plan = common::quoted_plan(
        server.sourcing(),
        order("q", segment, vec![line("l1", "BO-1", units)]),
    )
    .await;
    plan.unfilled.into_iter().map(|u| u.promised_date).collect()
}

#[tokio::test]
async fn inbound_supply_is_listed_and_dates_the_units_that_wait() {
    let server = TestServer::start_with(config(None)).await;
    // today is 2026-03-02 on the server's clock; two purchase orders are due
    let summary = server
        .inventory()
        .set_stock(pb::SetStockRequest {
            updates: vec![
                inbound("wh-zaragoza", 3, "2026-03-07", "PO-1"),
                inbound("wh-getafe", 4, "2026-03-12", "PO-2"),
                // the Lisbon DC, which marketplace may not use
                inbound("wh-amadora", 2, "2026-03-08", "PO-L"),
                // refused, each naming its field: a day gone, no reference, a bad day
                inbound("wh-getafe", 4, "2026-03-01", "PO-3"),
                inbound("wh-getafe", 4, "2026-03-12", ""),
                inbound("wh-getafe", 4, "12/03/2026", "PO-4"),
                inbound("wh-getafe", -2, "2026-03-12", "PO-5"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.applied, 3, "{summary:?}");
    let reasons: Vec<&str> = summary
        .rejections
        .iter()
        .map(|r| r.reason.split(':').next().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["expected_date", "reference", "expected_date", "quantity"]
    );
    let availability = |segment: &'static str| {
        let server = &server;
        async move {
            let a = server.availability("BO-1", segment).await;
            a.inbound
                .iter()
                .map(|i| (i.expected_date.clone(), i.units))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        availability("").await,
        vec![
            ("2026-03-07".into(), 3),
            ("2026-03-08".into(), 2),
            ("2026-03-12".into(), 4)
        ]
    );
    // as a segment sees it: the nodes it may use
    assert_eq!(
        availability("marketplace").await,
        vec![("2026-03-07".into(), 3), ("2026-03-12".into(), 4)]
    );
    // nothing is available yet: a standard order waits, dated by the inbound supply
    let w = reserve(&server, "w", "standard", 2).await;
    assert_eq!(waiting(&w), 2);
    let promised: Vec<String> = w
        .plan
        .as_ref()
        .unwrap()
        .unfilled
        .iter()
        .map(|u| u.promised_date.clone())
        .collect();
    assert_eq!(promised, ["2026-03-07"]);
    // behind the 2 waiting: 1 more unit comes with the first receipt, 3 more need the second,
    // 6 the third, and 8 are not covered
    assert_eq!(quote_promise(&server, "standard", 1).await, ["2026-03-07"]);
    assert_eq!(quote_promise(&server, "standard", 3).await, ["2026-03-08"]);
    assert_eq!(quote_promise(&server, "standard", 6).await, ["2026-03-12"]);
    assert_eq!(quote_promise(&server, "standard", 8).await, [""]);
    // a marketplace order waits behind standard's units too, and counts no receipt at the
    // Lisbon DC; a segment that does not backorder is given no date
    assert_eq!(
        quote_promise(&server, "marketplace", 2).await,
        ["2026-03-12"]
    );
    let vip = server
        .sourcing()
        .quote(pb::QuoteRequest {
            order: Some(order("v", "vip", vec![line("l1", "BO-1", 1)])),
            strategy: 0,
        })
        .await;
    assert!(vip.is_err(), "vip refuses what no node ships now");
    // the goods of PO-1 are received: the receipt is removed and the stock fills the order
    // that waits
    let summary = server
        .inventory()
        .set_stock(pb::SetStockRequest {
            updates: vec![
                inbound("wh-zaragoza", 0, "2026-03-07", "PO-1"),
                pb::StockUpdate {
                    node_id: "wh-zaragoza".into(),
                    sku: "BO-1".into(),
                    kind: pb::StockUpdateKind::Delta as i32,
                    quantity: 3,
                    sequence: next_sequence(),
                    ..Default::default()
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.applied, 2, "{summary:?}");
    assert_eq!(
        availability("").await,
        vec![("2026-03-08".into(), 2), ("2026-03-12".into(), 4)]
    );
    let w = until_waiting(&server, "w", 0).await;
    assert_eq!(held(&w), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_count_units_rerouted_filled_and_cancelled() {
    let (server, ports) = TestServer::serve(config(Some(1)), None).await;
    let before = scrape(ports.metrics).await;
    // waits, then is filled by stock arriving
    reserve(&server, "mx", "standard", 2).await;
    server
        .sourcing()
        .commit(pb::CommitRequest {
            order_id: "mx".into(),
        })
        .await
        .unwrap();
    server.stock(&[("wh-zaragoza", "BO-1", 2, 0)]).await;
    until_waiting(&server, "mx", 0).await;
    // turned down by the only node with stock: the units wait again
    let answer = server
        .sourcing()
        .reroute(pb::RerouteRequest {
            order_id: "mx".into(),
            node_id: "wh-zaragoza".into(),
            lines: Vec::new(),
            reason: pb::RerouteReason::StoreRejected as i32,
            reroute_id: "mx-r".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.outcomes[0].fate, pb::UnitFate::Waiting as i32);
    // a day later they are cancelled
    server.clock.advance_secs(86_400);
    let mx = until_waiting(&server, "mx", 0).await;
    assert_eq!(
        mx.history.last().unwrap().kind,
        pb::decision::Kind::Cancelled as i32
    );
    let after = scrape(ports.metrics).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert!(
        moved("dom_router_backorder_units_total", &[("outcome", "filled")]) >= 2.0,
        "{after}"
    );
    assert!(
        moved(
            "dom_router_backorder_units_total",
            &[("outcome", "cancelled")]
        ) >= 2.0,
        "{after}"
    );
    assert!(
        moved(
            "dom_router_rerouted_units_total",
            &[("reason", "store_rejected"), ("fate", "waiting")]
        ) >= 2.0,
        "{after}"
    );
    assert!(
        moved("dom_router_events_total", &[("kind", "filled")]) >= 1.0,
        "{after}"
    );
    server.shutdown().await;
}
