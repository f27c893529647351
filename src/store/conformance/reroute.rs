//! Conformance cases of reroutes: units leave a node and are held at another, all or nothing,
//! once per reroute id, with the decision in the history and the change in the log.

use super::events::log_of;
use super::*;
use crate::events::{Change, EventKind};
use crate::store::{
    Decision, Fate, Gone, RerouteHold, RerouteOutcome, RerouteReason, UnitFate, WaitingUnits,
};

fn decision(id: &str, node: &str, reason: RerouteReason, fates: Vec<UnitFate>) -> Decision {
    Decision {
        kind: crate::store::DecisionKind::Reroute,
        at: T0,
        reroute_id: id.into(),
        digest: format!("d-{id}"),
        node_id: node.into(),
        reason,
        rules_version: "v1".into(),
        strategy: StrategyKind::Nearest,
        fates,
        plan: empty_plan(),
        waited_ms: 0,
    }
}

/// A reroute of `units` of line l1 (sku A) off `from`, to `to` (none: cancelled).
fn reroute(
    id: &str,
    order: &str,
    from: &str,
    to: Option<&str>,
    units: u64,
    reason: RerouteReason,
) -> RerouteHold {
    let fate = match to {
        Some(node) => Fate::Rerouted {
            node_id: node.into(),
        },
        None => Fate::Cancelled,
    };
    let fates = vec![UnitFate {
        line_id: "l1".into(),
        sku: "A".into(),
        units,
        fate,
    }];
    RerouteHold {
        order_id: order.into(),
        node_id: from.into(),
        removes_stock: reason.removes_stock(),
        gone: vec![Gone {
            line_id: "l1".into(),
            sku: "A".into(),
            units,
        }],
        new: to
            .map(|node| vec![alloc("l1", "A", node, units)])
            .unwrap_or_default(),
        waiting: Vec::new(),
        from_waiting: Vec::new(),
        use_safety_stock: false,
        closed: Vec::new(),
        decision: decision(id, from, reason, fates),
        cancelled: if to.is_none() { units } else { 0 },
    }
}

async fn done(store: &dyn StockStore, hold: RerouteHold) -> super::super::Reservation {
    match store.reroute(hold, T0).await.unwrap() {
        RerouteOutcome::Done(r) => r,
        other => panic!("expected the reroute done, got {other:?}"),
    }
}

async fn levels(store: &dyn StockStore) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for node in ["n1", "n2", "n3"] {
        let l = level(store, node, "A", T0).await;
        out.push((l.on_hand, l.reserved));
    }
    out
}

pub async fn a_reroute_moves_units_to_another_node_once(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 5, 0).await;
    seed(s, "n2", "A", 5, 0).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 60_000)).await;
    let r = done(
        s,
        reroute(
            "r1",
            "o1",
            "n1",
            Some("n2"),
            2,
            RerouteReason::StoreRejected,
        ),
    )
    .await;
    // the units went back to n1's stock and are held at n2; the order is still held, with the
    // same expiry
    assert_eq!(levels(s).await, vec![(5, 1), (5, 2), (0, 0)]);
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(r.expires_at, Some(T0 + 60_000));
    let at = |node: &str| {
        r.allocations
            .iter()
            .find(|a| a.node_id == node)
            .map(|a| (a.quantity, a.rejected))
    };
    assert_eq!(at("n1"), Some((1, 2)));
    assert_eq!(at("n2"), Some((2, 0)));
    assert_eq!(r.history.len(), 1);
    assert_eq!(r.history[0].reroute_id, "r1");
    // the day's capacity moves with the units
    let (_, used) = s.read_state(&[], 20_000, T0).await.unwrap();
    let mut used: Vec<(String, u64)> = used.into_iter().collect();
    used.sort();
    assert_eq!(used, vec![("n1".to_owned(), 1), ("n2".to_owned(), 2)]);
    assert_eq!(
        s.get_reservation("o1", T0).await.unwrap().unwrap(),
        r,
        "read back as answered"
    );
    // the same id again changes nothing, whatever it asks
    let again = s
        .reroute(
            reroute("r1", "o1", "n1", Some("n2"), 1, RerouteReason::Other),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(again, RerouteOutcome::Repeat(r.clone()));
    assert_eq!(levels(s).await, vec![(5, 1), (5, 2), (0, 0)]);
    // reported once (two stock events, created, rerouted)
    let events = log_of(s, 4).await;
    let rerouted: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::ReservationRerouted)
        .collect();
    assert_eq!(rerouted.len(), 1);
    match &rerouted[0].change {
        Change::Reservation(c) => {
            assert_eq!(c.order_id, "o1");
            assert_eq!(c.lines, vec!["l1".to_owned()]);
            assert_eq!(c.allocations, r.allocations);
        }
        other => panic!("{other:?}"),
    }
    // a release gives back what the order holds now
    let released = s.release("o1", &[], T0).await.unwrap();
    assert_eq!(released.state, ReservationState::Released);
    assert_eq!(levels(s).await, vec![(5, 0), (5, 0), (0, 0)]);
    let (_, used) = s.read_state(&[], 20_000, T0).await.unwrap();
    assert!(used.values().all(|u| *u == 0), "{used:?}");
}

pub async fn short_picked_units_leave_on_hand(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 5, 0).await;
    seed(s, "n2", "A", 5, 0).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 60_000)).await;
    s.commit("o1", T0).await.unwrap();
    let r = done(
        s,
        reroute("r1", "o1", "n1", Some("n2"), 3, RerouteReason::ShortPick),
    )
    .await;
    // the three units were never there: on hand goes down with the allocation
    assert_eq!(levels(s).await, vec![(2, 0), (5, 3), (0, 0)]);
    assert_eq!(r.state, ReservationState::Committed);
    assert_eq!(r.expires_at, None);
    // and the stock change is reported (after two seeds, created, committed, rerouted)
    let events = log_of(s, 6).await;
    assert!(events.iter().any(|e| matches!(
        &e.change,
        Change::Stock(c) if c.node_id == "n1" && c.level.on_hand == 2
    )));
    // a committed order rerouted still ships from where it went
    let shipped = s
        .apply_updates(&[shipment("n2", "A", 2, "o1", 3)], T0)
        .await
        .unwrap();
    assert_eq!(shipped, vec![UpdateResult::Applied]);
    let r = s.get_reservation("o1", T0).await.unwrap().unwrap();
    assert_eq!(r.state, ReservationState::Fulfilled);
    assert_eq!(levels(s).await, vec![(2, 0), (2, 0), (0, 0)]);
}

pub async fn a_reroute_that_cannot_hold_changes_nothing(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 5, 0).await;
    seed(s, "n2", "A", 1, 0).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 60_000)).await;
    let before = s.get_reservation("o1", T0).await.unwrap().unwrap();
    // n2 has one unit, not two
    let outcome = s
        .reroute(
            reroute("r1", "o1", "n1", Some("n2"), 2, RerouteReason::Damaged),
            T0,
        )
        .await
        .unwrap();
    assert!(
        matches!(&outcome, RerouteOutcome::Insufficient { node_id, wanted: 2, available: 1, .. } if node_id == "n2"),
        "{outcome:?}"
    );
    // more units than n1 has of the order outstanding
    let outcome = s
        .reroute(
            reroute("r2", "o1", "n1", Some("n2"), 4, RerouteReason::Other),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(outcome, RerouteOutcome::Changed);
    // an order that is not held or committed
    let outcome = s
        .reroute(
            reroute("r3", "nope", "n1", Some("n2"), 1, RerouteReason::Other),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(outcome, RerouteOutcome::Changed);
    assert_eq!(levels(s).await, vec![(5, 3), (1, 0), (0, 0)]);
    assert_eq!(s.get_reservation("o1", T0).await.unwrap().unwrap(), before);
    s.release("o1", &[], T0).await.unwrap();
    let outcome = s
        .reroute(
            reroute("r4", "o1", "n1", Some("n2"), 1, RerouteReason::Other),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(outcome, RerouteOutcome::Changed);
    assert_eq!(levels(s).await, vec![(5, 0), (1, 0), (0, 0)]);
    // a seed, created, released, and nothing more
    let log = log_of(s, 4).await;
    assert!(!log.iter().any(|e| e.kind == EventKind::ReservationRerouted));
}

pub async fn units_no_node_ships_are_cancelled_or_wait(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 5, 0).await;
    // the reserve left a unit of another line waiting
    let first_wait = WaitingUnits {
        line_id: "l0".into(),
        sku: "A".into(),
        units: 1,
        since: T0 - 5,
    };
    let mut request = hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 60_000);
    request.waiting = vec![first_wait.clone()];
    let r = created(s, request).await;
    assert_eq!(r.waiting, vec![first_wait.clone()]);
    assert_eq!(
        s.get_reservation("o1", T0).await.unwrap().unwrap().waiting,
        vec![first_wait.clone()]
    );
    // one unit cancelled
    let r = done(
        s,
        reroute("r1", "o1", "n1", None, 1, RerouteReason::StoreRejected),
    )
    .await;
    assert_eq!(r.allocations[0].quantity, 2);
    assert_eq!(r.state, ReservationState::Held);
    // the rest wait for supply
    let mut wait = reroute("r2", "o1", "n1", None, 2, RerouteReason::StoreRejected);
    wait.cancelled = 0;
    wait.waiting = vec![WaitingUnits {
        line_id: "l1".into(),
        sku: "A".into(),
        units: 2,
        since: T0,
    }];
    wait.decision.fates[0].fate = Fate::Waiting;
    let r = done(s, wait).await;
    assert_eq!(r.waiting.len(), 2);
    assert_eq!(r.waiting[0], first_wait);
    assert_eq!(
        (r.waiting[1].line_id.as_str(), r.waiting[1].units),
        ("l1", 2)
    );
    assert_eq!(r.history.len(), 2);
    assert_eq!(levels(s).await, vec![(5, 0), (0, 0), (0, 0)]);
    // nothing is outstanding at any node, but units wait: the order stays open
    assert_eq!(r.state, ReservationState::Held);
    // a reroute that leaves nothing outstanding and nothing waiting settles the order
    created(s, hold("o2", vec![alloc("l1", "A", "n1", 1)], T0 + 60_000)).await;
    let gone = done(s, reroute("r9", "o2", "n1", None, 1, RerouteReason::Other)).await;
    assert_eq!(gone.state, ReservationState::Released);
    // a seed; o1 created, rerouted and cancelled, rerouted; o2 created, rerouted, cancelled
    let log = log_of(s, 8).await;
    let kinds: Vec<EventKind> = log
        .iter()
        .filter(|e| matches!(&e.change, Change::Reservation(c) if c.order_id == "o1"))
        .map(|e| e.kind)
        .filter(|k| {
            matches!(
                k,
                EventKind::ReservationRerouted | EventKind::UnitsCancelled
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::ReservationRerouted,
            EventKind::UnitsCancelled,
            EventKind::ReservationRerouted
        ]
    );
}

pub async fn rerouted_units_of_a_hold_expire_with_it(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 5, 0).await;
    seed(s, "n2", "A", 5, 0).await;
    seed(s, "n3", "A", 5, 0).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 1000)).await;
    done(
        s,
        reroute(
            "r1",
            "o1",
            "n1",
            Some("n2"),
            2,
            RerouteReason::NodeUnavailable,
        ),
    )
    .await;
    // a second reroute, off the node the first one chose
    let mut second = reroute("r2", "o1", "n2", Some("n3"), 2, RerouteReason::Other);
    second.decision.at = T0 + 1;
    done(s, second).await;
    assert_eq!(levels(s).await, vec![(5, 1), (5, 0), (5, 2)]);
    assert_eq!(s.expire_holds(T0 + 1000).await.unwrap(), 1);
    assert_eq!(levels(s).await, vec![(5, 0), (5, 0), (5, 0)]);
    let r = s.get_reservation("o1", T0 + 1000).await.unwrap().unwrap();
    assert_eq!(r.state, ReservationState::Expired);
    assert_eq!(
        r.history
            .iter()
            .map(|d| d.reroute_id.as_str())
            .collect::<Vec<_>>(),
        vec!["r1", "r2"]
    );
}
