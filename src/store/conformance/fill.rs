//! Conformance cases of units waiting for supply: a fill takes them from the waiting units
//! and holds them in one step, once; units cancelled or released wait no more; the index of
//! waiting lines lists every line that waits.

use super::events::log_of;
use super::*;
use crate::events::{Change, EventKind};
use crate::store::{
    Decision, DecisionKind, Fate, Gone, RerouteHold, RerouteOutcome, RerouteReason, UnitFate,
    WaitingEntry, WaitingUnits,
};

fn waiting(line: &str, units: u64, since: Millis) -> WaitingUnits {
    WaitingUnits {
        line_id: line.into(),
        sku: "A".into(),
        units,
        since,
    }
}

/// A fill of `units` of line `line` (sku A) at `node`, or, with no node, their cancelling.
fn fill(id: &str, order: &str, line: &str, node: Option<&str>, units: u64) -> RerouteHold {
    let (kind, fate) = match node {
        Some(n) => (DecisionKind::Fill, Fate::Filled { node_id: n.into() }),
        None => (DecisionKind::Expire, Fate::Cancelled),
    };
    RerouteHold {
        order_id: order.into(),
        node_id: String::new(),
        removes_stock: false,
        gone: Vec::new(),
        new: node
            .map(|n| vec![alloc(line, "A", n, units)])
            .unwrap_or_default(),
        waiting: Vec::new(),
        from_waiting: vec![Gone {
            line_id: line.into(),
            sku: "A".into(),
            units,
        }],
        use_safety_stock: false,
        closed: Vec::new(),
        decision: Decision {
            kind,
            at: T0,
            reroute_id: id.into(),
            digest: String::new(),
            node_id: String::new(),
            reason: RerouteReason::Other,
            rules_version: "v1".into(),
            strategy: StrategyKind::Nearest,
            fates: vec![UnitFate {
                line_id: line.into(),
                sku: "A".into(),
                units,
                fate,
            }],
            plan: empty_plan(),
            waited_ms: 0,
        },
        cancelled: if node.is_none() { units } else { 0 },
    }
}

/// An order holding a unit of line l0 at n1 and waiting for `units` of line l1, noted in the
/// index first as the engine does.
async fn waiting_order(s: &dyn StockStore, order: &str, units: u64, since: Millis) {
    let mut request = hold(order, vec![alloc("l0", "A", "n1", 1)], T0 + 60_000);
    request.waiting = vec![waiting("l1", units, since)];
    s.note_waiting(&WaitingEntry::of(order, "standard", &request.waiting))
        .await
        .unwrap();
    created(s, request).await;
}

async fn done(s: &dyn StockStore, hold: RerouteHold) -> super::super::Reservation {
    match s.reroute(hold, T0).await.unwrap() {
        RerouteOutcome::Done(r) => r,
        other => panic!("expected the fill done, got {other:?}"),
    }
}

pub async fn a_fill_holds_waiting_units_once(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 1, 0).await;
    waiting_order(s, "o1", 3, T0 - 10).await;
    let listed = s.waiting_for(&["A".into()]).await.unwrap();
    assert_eq!(
        listed,
        vec![WaitingEntry {
            order_id: "o1".into(),
            line_id: "l1".into(),
            sku: "A".into(),
            segment: "standard".into(),
            units: 3,
            since: T0 - 10,
        }]
    );
    assert!(s.waiting_for(&["B".into()]).await.unwrap().is_empty());
    // supply arrives at n2: two of the three units are held there, one still waits
    seed(s, "n2", "A", 2, 0).await;
    let r = done(s, fill("f1", "o1", "l1", Some("n2"), 2)).await;
    assert_eq!(r.waiting, vec![waiting("l1", 1, T0 - 10)]);
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(r.expires_at, Some(T0 + 60_000));
    let at_n2: Vec<_> = r.allocations.iter().filter(|a| a.node_id == "n2").collect();
    assert_eq!(at_n2.len(), 1);
    assert_eq!((at_n2[0].line_id.as_str(), at_n2[0].quantity), ("l1", 2));
    assert_eq!(r.history.len(), 1);
    assert_eq!(r.history[0].kind, DecisionKind::Fill);
    assert_eq!(level(s, "n2", "A", T0).await.reserved, 2);
    assert_eq!(s.get_reservation("o1", T0).await.unwrap().unwrap(), r);
    // the same fill again changes nothing
    assert!(matches!(
        s.reroute(fill("f1", "o1", "l1", Some("n2"), 2), T0)
            .await
            .unwrap(),
        RerouteOutcome::Repeat(_)
    ));
    // nor does another fill of units no longer waiting, even with stock for it
    seed_more(s, "n3", 5).await;
    let outcome = s
        .reroute(fill("f2", "o1", "l1", Some("n3"), 2), T0)
        .await
        .unwrap();
    assert_eq!(outcome, RerouteOutcome::Changed);
    assert_eq!(level(s, "n3", "A", T0).await.reserved, 0);
    assert_eq!(level(s, "n2", "A", T0).await.reserved, 2);
    // the fill is reported once
    let log = log_of(s, 5).await;
    let filled: Vec<_> = log
        .iter()
        .filter(|e| e.kind == EventKind::BackorderFilled)
        .collect();
    assert_eq!(filled.len(), 1);
    match &filled[0].change {
        Change::Reservation(c) => {
            assert_eq!(c.order_id, "o1");
            assert_eq!(c.lines, vec!["l1".to_owned()]);
        }
        other => panic!("expected a reservation change, got {other:?}"),
    }
    // the units filled expire with the hold, and the unit still waiting waits no more
    assert_eq!(s.expire_holds(T0 + 60_000).await.unwrap(), 1);
    assert_eq!(level(s, "n2", "A", T0 + 60_000).await.reserved, 0);
    assert_eq!(level(s, "n1", "A", T0 + 60_000).await.reserved, 0);
    let r = s.get_reservation("o1", T0 + 60_000).await.unwrap().unwrap();
    assert_eq!(r.state, ReservationState::Expired);
    assert!(r.waiting.is_empty());
}

pub async fn a_fill_keeps_what_better_segments_protect(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 1, 0).await;
    waiting_order(s, "o1", 2, T0 - 10).await;
    // three units at n2, all kept for a better segment: the store refuses the fill
    seed(s, "n2", "A", 3, 0).await;
    let mut kept = fill("f1", "o1", "l1", Some("n2"), 1);
    kept.closed = vec![crate::store::Protection {
        units: 3,
        share: 0.0,
    }];
    let outcome = s.reroute(kept, T0).await.unwrap();
    assert!(
        matches!(outcome, RerouteOutcome::Insufficient { available: 0, .. }),
        "{outcome:?}"
    );
    assert_eq!(level(s, "n2", "A", T0).await.reserved, 0);
    let r = s.get_reservation("o1", T0).await.unwrap().unwrap();
    assert_eq!(r.waiting, vec![waiting("l1", 2, T0 - 10)]);
    // kept from it: two of the three units
    let mut two_kept = fill("f2", "o1", "l1", Some("n2"), 1);
    two_kept.closed = vec![crate::store::Protection {
        units: 2,
        share: 0.0,
    }];
    let r = done(s, two_kept).await;
    assert_eq!(r.waiting, vec![waiting("l1", 1, T0 - 10)]);
    assert_eq!(level(s, "n2", "A", T0).await.reserved, 1);
}

async fn seed_more(s: &dyn StockStore, node: &str, on_hand: u64) {
    seed(s, node, "A", on_hand, 0).await;
}

pub async fn units_cancelled_or_released_wait_no_more(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 5, 0).await;
    // cancelled: the waiting units go, the held unit stays
    waiting_order(s, "o1", 2, T0 - 10).await;
    let r = done(s, fill("x1", "o1", "l1", None, 2)).await;
    assert!(r.waiting.is_empty());
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(r.history[0].kind, DecisionKind::Expire);
    // more units than wait are refused, changing nothing
    waiting_order(s, "o2", 2, T0 - 10).await;
    let outcome = s
        .reroute(fill("x2", "o2", "l1", None, 3), T0)
        .await
        .unwrap();
    assert_eq!(outcome, RerouteOutcome::Changed);
    // a release of the waiting line drops its units, and the order stays held
    let r = s.release("o2", &["l1".into()], T0).await.unwrap();
    assert!(r.waiting.is_empty());
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(r.allocations[0].outstanding(), 1);
    // with nothing outstanding and nothing waiting, an order settles
    let r = s.release("o2", &["l0".into()], T0).await.unwrap();
    assert_eq!(r.state, ReservationState::Released);
    // units waiting keep an order open when nothing is outstanding; cancelling them settles it
    waiting_order(s, "o3", 1, T0 - 10).await;
    s.release("o3", &["l0".into()], T0).await.unwrap();
    let r = s.get_reservation("o3", T0).await.unwrap().unwrap();
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(r.waiting.len(), 1);
    let r = done(s, fill("x3", "o3", "l1", None, 1)).await;
    assert_eq!(r.state, ReservationState::Released);
    assert!(r.waiting.is_empty());
    // a released order has nothing waiting, and nothing is held
    waiting_order(s, "o4", 4, T0 - 10).await;
    let r = s.release("o4", &[], T0).await.unwrap();
    assert_eq!(r.state, ReservationState::Released);
    assert!(r.waiting.is_empty());
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 1);
    // cancelling reports units cancelled, never a reroute or a fill
    let log = log_of(s, 11).await;
    let of = |order: &str| -> Vec<EventKind> {
        log.iter()
            .filter(|e| matches!(&e.change, Change::Reservation(c) if c.order_id == order))
            .map(|e| e.kind)
            .collect()
    };
    assert_eq!(
        of("o1"),
        vec![EventKind::ReservationCreated, EventKind::UnitsCancelled]
    );
}

pub async fn the_index_lists_every_waiting_line(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 5, 0).await;
    waiting_order(s, "o1", 2, T0 - 20).await;
    waiting_order(s, "o2", 3, T0 - 10).await;
    // oldest first
    let listed = s.waiting_for(&[]).await.unwrap();
    let orders: Vec<(&str, u64)> = listed
        .iter()
        .map(|e| (e.order_id.as_str(), e.units))
        .collect();
    assert_eq!(orders, vec![("o1", 2), ("o2", 3)]);
    let sums = |n: u64| {
        std::collections::HashMap::from([(
            "A".to_owned(),
            std::collections::BTreeMap::from([("standard".to_owned(), n)]),
        )])
    };
    assert_eq!(
        s.waiting_units(&["A".into(), "B".into()]).await.unwrap(),
        sums(5)
    );
    // o1 filled: once its line is forgotten as listed, only o2 is
    done(s, fill("f1", "o1", "l1", Some("n1"), 2)).await;
    s.forget_waiting(&listed[..1]).await.unwrap();
    let listed = s.waiting_for(&["A".into()]).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].order_id, "o2");
    assert_eq!(s.waiting_units(&["A".into()]).await.unwrap(), sums(3));
    // a line noted again with other units is not forgotten by its old entry
    let old = listed[0].clone();
    done(s, fill("f2", "o2", "l1", Some("n1"), 1)).await;
    let now = WaitingEntry {
        units: 2,
        ..old.clone()
    };
    s.note_waiting(std::slice::from_ref(&now)).await.unwrap();
    s.forget_waiting(std::slice::from_ref(&old)).await.unwrap();
    assert_eq!(s.waiting_for(&["A".into()]).await.unwrap(), vec![now]);
    assert_eq!(s.waiting_units(&["A".into()]).await.unwrap(), sums(2));
}

fn inbound(node: &str, seq: u64, units: u64, day: u32, reference: &str) -> StockUpdate {
    StockUpdate {
        node_id: node.into(),
        sku: "A".into(),
        sequence: seq,
        kind: UpdateKind::Inbound {
            units,
            expected: chrono::NaiveDate::from_ymd_opt(2027, 1, day).unwrap(),
            reference: reference.into(),
        },
    }
}

pub async fn expected_receipts_are_kept_replaced_and_removed(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 5, 0).await;
    let applied = s
        .apply_updates(
            &[
                inbound("n1", 2, 4, 20, "PO-2"),
                inbound("n1", 3, 3, 10, "PO-1"),
                inbound("n2", 1, 6, 10, "PO-9"),
                // a sequence not above the last is stale, as for any update
                inbound("n1", 3, 9, 5, "PO-3"),
            ],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        applied,
        vec![
            UpdateResult::Applied,
            UpdateResult::Applied,
            UpdateResult::Applied,
            UpdateResult::Stale
        ]
    );
    let listed = |view: &crate::store::InboundView| -> Vec<(String, String, u32, u64)> {
        use chrono::Datelike;
        view.get("A")
            .map(|l| {
                l.iter()
                    .map(|i| {
                        (
                            i.node_id.clone(),
                            i.reference.clone(),
                            i.expected.day(),
                            i.units,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let view = s.read_inbound(&["A".into(), "B".into()]).await.unwrap();
    assert!(!view.contains_key("B"));
    assert_eq!(
        listed(&view),
        vec![
            ("n1".into(), "PO-1".into(), 10, 3),
            ("n2".into(), "PO-9".into(), 10, 6),
            ("n1".into(), "PO-2".into(), 20, 4),
        ]
    );
    // nothing becomes available; the sequence moves on
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reserved, l.last_sequence), (5, 0, 3));
    // a reference again replaces its receipt; 0 units removes it
    s.apply_updates(
        &[
            inbound("n1", 4, 8, 12, "PO-2"),
            inbound("n2", 2, 0, 10, "PO-9"),
        ],
        T0,
    )
    .await
    .unwrap();
    assert_eq!(
        listed(&s.read_inbound(&["A".into()]).await.unwrap()),
        vec![
            ("n1".into(), "PO-1".into(), 10, 3),
            ("n1".into(), "PO-2".into(), 12, 8),
        ]
    );
    // only the seed changed a level: one stock event
    let log = log_of(s, 1).await;
    let stock = log
        .iter()
        .filter(|e| e.kind == EventKind::StockChanged)
        .count();
    assert_eq!(stock, 1);
}
