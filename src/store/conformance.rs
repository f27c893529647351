//! The behaviour every [`StockStore`] must have, as one suite of cases. Each store runs all of
//! them with [`store_conformance_tests!`](crate::store_conformance_tests), given an async
//! expression that makes a fresh, empty store.

use std::sync::Arc;

use super::{
    Allocation, HoldRequest, MAX_STOCK_UNITS, ReservationState, ReserveOutcome, StockStore,
    StockUpdate, StoreError, UpdateKind, UpdateResult,
};
use crate::clock::Millis;
use crate::domain::{CostBreakdown, Plan, SolveStatus, StrategyKind};

/// Generates one `#[tokio::test]` per conformance case for the store made by `$make`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@cases $make;
            snapshot_sets_levels,
            stale_and_repeated_updates_are_ignored,
            delta_below_zero_is_rejected_and_changes_nothing,
            reserve_holds_stock,
            reserve_is_all_or_nothing,
            reserve_respects_safety_stock,
            reserve_is_idempotent_by_order_id,
            commit_and_release_are_idempotent,
            release_of_some_lines,
            release_of_an_unknown_line_changes_nothing,
            unknown_orders_are_not_found,
            holds_expire_once_and_return_stock,
            committed_orders_do_not_expire,
            shipments_reduce_on_hand_and_allocation,
            bad_shipments_are_rejected,
            snapshots_never_wipe_reservations,
            concurrent_reserves_never_oversell,
            holds_consume_and_return_node_capacity,
            read_state_returns_stock_and_capacity_after_expiry,
            active_holds_count_holds_until_they_expire,
            figures_above_the_limit_are_rejected_and_change_nothing,
            deltas_stay_within_zero_and_the_limit,
            network_totals_stay_exact,
            holds_beyond_the_limit_are_refused,
            units_of_an_expired_hold_can_be_reserved_before_a_sweep,
            releases_keep_the_capacity_of_shipped_units,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store: std::sync::Arc<dyn $crate::store::StockStore> = $make.await;
                $crate::store::conformance::$case(store).await;
            }
        )*
    };
}

const T0: Millis = 1_800_000_000_000;

fn snapshot(node: &str, sku: &str, seq: u64, on_hand: u64, safety: Option<u64>) -> StockUpdate {
    StockUpdate {
        node_id: node.into(),
        sku: sku.into(),
        sequence: seq,
        kind: UpdateKind::Snapshot {
            on_hand,
            safety_stock: safety,
        },
    }
}

fn delta(node: &str, sku: &str, seq: u64, change: i64) -> StockUpdate {
    StockUpdate {
        node_id: node.into(),
        sku: sku.into(),
        sequence: seq,
        kind: UpdateKind::Delta { change },
    }
}

fn shipment(node: &str, sku: &str, seq: u64, order: &str, quantity: u64) -> StockUpdate {
    StockUpdate {
        node_id: node.into(),
        sku: sku.into(),
        sequence: seq,
        kind: UpdateKind::Shipment {
            order_id: order.into(),
            quantity,
        },
    }
}

fn alloc(line: &str, sku: &str, node: &str, quantity: u64) -> Allocation {
    Allocation {
        line_id: line.into(),
        sku: sku.into(),
        node_id: node.into(),
        quantity,
        shipped: 0,
        released: 0,
    }
}

/// A plan with nothing in it, for hold requests whose plan does not matter.
pub fn empty_plan() -> Plan {
    Plan {
        shipments: Vec::new(),
        unfilled: Vec::new(),
        total_cost: 0.0,
        cost: CostBreakdown::default(),
        strategy: StrategyKind::Nearest,
        status: SolveStatus::Heuristic,
        unused_nodes: Vec::new(),
        binding: Vec::new(),
        plan_micros: 0,
        rules_version: String::new(),
    }
}

fn hold(order: &str, allocations: Vec<Allocation>, expires_at: Millis) -> HoldRequest {
    HoldRequest {
        order_id: order.into(),
        fingerprint: format!("fp-{order}"),
        segment: "standard".into(),
        use_safety_stock: false,
        plan: empty_plan(),
        allocations,
        expires_at,
        capacity_day: 20_000,
        capacity_limits: Vec::new(),
    }
}

async fn seed(store: &dyn StockStore, node: &str, sku: &str, on_hand: u64, safety: u64) {
    let r = store
        .apply_updates(&[snapshot(node, sku, 1, on_hand, Some(safety))], T0)
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied]);
}

async fn level(store: &dyn StockStore, node: &str, sku: &str, now: Millis) -> super::StockLevel {
    let view = store.read_stock(&[sku.to_owned()], now).await.unwrap();
    view.get(sku)
        .and_then(|m| m.get(node))
        .copied()
        .unwrap_or_default()
}

async fn created(store: &dyn StockStore, request: HoldRequest) -> super::Reservation {
    match store.reserve(request, T0).await.unwrap() {
        ReserveOutcome::Created(r) => r,
        other => panic!("expected a new hold, got {other:?}"),
    }
}

pub async fn snapshot_sets_levels(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 2).await;
    let l = level(s, "n1", "A", T0).await;
    assert_eq!(
        (l.on_hand, l.reserved, l.safety_stock, l.last_sequence),
        (10, 0, 2, 1)
    );
    assert_eq!(l.ats(false), 8);
    assert_eq!(l.ats(true), 10);
    // a snapshot without safety stock keeps the one set before
    let r = s
        .apply_updates(&[snapshot("n1", "A", 2, 4, None)], T0)
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied]);
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.safety_stock), (4, 2));
    let view = s
        .read_stock(&["A".into(), "NONE".into()], T0)
        .await
        .unwrap();
    assert!(view["NONE"].is_empty());
}

pub async fn stale_and_repeated_updates_are_ignored(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    let r = s
        .apply_updates(
            &[
                snapshot("n1", "A", 5, 10, None),
                snapshot("n1", "A", 5, 99, None),
                delta("n1", "A", 3, 7),
                delta("n1", "A", 6, 2),
                delta("n1", "A", 6, 2),
                snapshot("n2", "A", 1, 4, None),
                snapshot("n1", "B", 1, 3, None),
            ],
            T0,
        )
        .await
        .unwrap();
    use UpdateResult::*;
    assert_eq!(
        r,
        vec![Applied, Stale, Stale, Applied, Stale, Applied, Applied]
    );
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.last_sequence), (12, 6));
    assert_eq!(level(s, "n2", "A", T0).await.on_hand, 4);
    assert_eq!(level(s, "n1", "B", T0).await.on_hand, 3);
}

pub async fn delta_below_zero_is_rejected_and_changes_nothing(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 3, 0).await;
    let r = s
        .apply_updates(&[delta("n1", "A", 2, -4)], T0)
        .await
        .unwrap();
    assert!(
        matches!(&r[0], UpdateResult::Rejected(why) if why.contains("below zero")),
        "{r:?}"
    );
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.last_sequence), (3, 1));
    // the same sequence applies once the update is a valid one
    let r = s
        .apply_updates(&[delta("n1", "A", 2, -3)], T0)
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied]);
    assert_eq!(level(s, "n1", "A", T0).await.on_hand, 0);
}

pub async fn reserve_holds_stock(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    seed(s, "n2", "A", 5, 0).await;
    let r = created(
        s,
        hold(
            "o1",
            vec![alloc("l1", "A", "n1", 4), alloc("l1", "A", "n2", 5)],
            T0 + 60_000,
        ),
    )
    .await;
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(r.expires_at, Some(T0 + 60_000));
    assert_eq!(r.created_at, T0);
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 4);
    assert_eq!(level(s, "n1", "A", T0).await.ats(false), 6);
    assert_eq!(level(s, "n2", "A", T0).await.ats(false), 0);
    let got = s.get_reservation("o1", T0).await.unwrap().unwrap();
    assert_eq!(got, r);
}

pub async fn reserve_is_all_or_nothing(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    seed(s, "n1", "B", 1, 0).await;
    let outcome = s
        .reserve(
            hold(
                "o1",
                vec![alloc("l1", "A", "n1", 4), alloc("l2", "B", "n1", 2)],
                T0 + 1000,
            ),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ReserveOutcome::Insufficient {
            sku: "B".into(),
            node_id: "n1".into(),
            wanted: 2,
            available: 1
        }
    );
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 0);
    assert_eq!(level(s, "n1", "B", T0).await.reserved, 0);
    assert!(s.get_reservation("o1", T0).await.unwrap().is_none());
    // two lines of one sku at one node count together
    let outcome = s
        .reserve(
            hold(
                "o2",
                vec![alloc("l1", "B", "n1", 1), alloc("l2", "B", "n1", 1)],
                T0 + 1000,
            ),
            T0,
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, ReserveOutcome::Insufficient { wanted: 2, .. }),
        "{outcome:?}"
    );
    // a node that never had the sku has nothing
    let outcome = s
        .reserve(hold("o3", vec![alloc("l1", "A", "n9", 1)], T0 + 1000), T0)
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        ReserveOutcome::Insufficient { available: 0, .. }
    ));
}

pub async fn reserve_respects_safety_stock(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 5, 3).await;
    let outcome = s
        .reserve(hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 1000), T0)
        .await
        .unwrap();
    assert!(
        matches!(outcome, ReserveOutcome::Insufficient { available: 2, .. }),
        "{outcome:?}"
    );
    let mut request = hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 1000);
    request.use_safety_stock = true;
    created(s, request).await;
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.reserved, l.ats(false), l.ats(true)), (3, 0, 2));
}

pub async fn reserve_is_idempotent_by_order_id(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    let first = created(s, hold("o1", vec![alloc("l1", "A", "n1", 4)], T0 + 1000)).await;
    let again = s
        .reserve(hold("o1", vec![alloc("l1", "A", "n1", 4)], T0 + 5000), T0)
        .await
        .unwrap();
    assert_eq!(again, ReserveOutcome::Existing(first.clone()));
    // a different order under the same id changes nothing either; the caller sees the record
    let other = s
        .reserve(hold("o1", vec![alloc("l1", "A", "n1", 9)], T0 + 5000), T0)
        .await
        .unwrap();
    assert_eq!(other, ReserveOutcome::Existing(first));
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 4);
}

pub async fn commit_and_release_are_idempotent(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 4)], T0 + 1000)).await;
    let c1 = s.commit("o1", T0).await.unwrap();
    assert_eq!(c1.state, ReservationState::Committed);
    assert_eq!(c1.expires_at, None);
    let c2 = s.commit("o1", T0).await.unwrap();
    assert_eq!(c1, c2);
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 4);
    let r1 = s.release("o1", &[], T0).await.unwrap();
    assert_eq!(r1.state, ReservationState::Released);
    assert_eq!(r1.allocations[0].released, 4);
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 0);
    let r2 = s.release("o1", &[], T0).await.unwrap();
    assert_eq!(r1, r2);
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 0);
    let e = s.commit("o1", T0).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::InvalidState {
                state: ReservationState::Released,
                ..
            }
        ),
        "{e:?}"
    );
}

pub async fn release_of_some_lines(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    seed(s, "n1", "B", 10, 0).await;
    created(
        s,
        hold(
            "o1",
            vec![alloc("l1", "A", "n1", 2), alloc("l2", "B", "n1", 3)],
            T0 + 1000,
        ),
    )
    .await;
    let r = s.release("o1", &["l2".into()], T0).await.unwrap();
    assert_eq!(r.state, ReservationState::Held);
    assert_eq!(level(s, "n1", "B", T0).await.reserved, 0);
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 2);
    let again = s.release("o1", &["l2".into()], T0).await.unwrap();
    assert_eq!(r, again);
    let r = s.release("o1", &["l1".into()], T0).await.unwrap();
    assert_eq!(r.state, ReservationState::Released);
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 0);
    // a released order has no hold left to expire
    assert_eq!(s.expire_holds(T0 + 10_000).await.unwrap(), 0);
    assert_eq!(
        s.get_reservation("o1", T0 + 10_000)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Released
    );
}

pub async fn release_of_an_unknown_line_changes_nothing(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 2)], T0 + 1000)).await;
    let e = s
        .release("o1", &["l1".into(), "nope".into()], T0)
        .await
        .unwrap_err();
    assert_eq!(
        e,
        StoreError::UnknownLine {
            order_id: "o1".into(),
            line_id: "nope".into()
        }
    );
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 2);
}

pub async fn unknown_orders_are_not_found(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    assert!(s.get_reservation("x", T0).await.unwrap().is_none());
    assert_eq!(
        s.commit("x", T0).await.unwrap_err(),
        StoreError::NotFound("x".into())
    );
    assert_eq!(
        s.release("x", &[], T0).await.unwrap_err(),
        StoreError::NotFound("x".into())
    );
}

pub async fn holds_expire_once_and_return_stock(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 4)], T0 + 1000)).await;
    created(s, hold("o2", vec![alloc("l1", "A", "n1", 1)], T0 + 5000)).await;
    assert_eq!(level(s, "n1", "A", T0 + 999).await.reserved, 5);
    assert_eq!(
        s.get_reservation("o1", T0 + 999)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Held
    );
    // reading stock at expiry returns the hold's units
    assert_eq!(level(s, "n1", "A", T0 + 1000).await.reserved, 1);
    let r = s.get_reservation("o1", T0 + 1000).await.unwrap().unwrap();
    assert_eq!(r.state, ReservationState::Expired);
    assert_eq!(r.allocations[0].released, 4);
    // the sweep finds only the hold not yet expired, and only once
    assert_eq!(s.expire_holds(T0 + 6000).await.unwrap(), 1);
    assert_eq!(s.expire_holds(T0 + 7000).await.unwrap(), 0);
    assert_eq!(level(s, "n1", "A", T0 + 7000).await.reserved, 0);
    let e = s.commit("o1", T0 + 7000).await.unwrap_err();
    assert!(matches!(
        e,
        StoreError::InvalidState {
            state: ReservationState::Expired,
            ..
        }
    ));
    // releasing an expired hold gives nothing back twice
    let r = s.release("o1", &[], T0 + 7000).await.unwrap();
    assert_eq!(r.state, ReservationState::Expired);
    assert_eq!(level(s, "n1", "A", T0 + 7000).await.reserved, 0);
}

pub async fn active_holds_count_holds_until_they_expire(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    assert_eq!(s.active_holds(T0).await.unwrap(), 0);
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 4)], T0 + 1000)).await;
    created(s, hold("o2", vec![alloc("l1", "A", "n1", 1)], T0 + 5000)).await;
    assert_eq!(s.active_holds(T0 + 10).await.unwrap(), 2);
    assert_eq!(s.expire_holds(T0 + 6000).await.unwrap(), 2);
    assert_eq!(s.active_holds(T0 + 6000).await.unwrap(), 0);
}

pub async fn committed_orders_do_not_expire(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 4)], T0 + 1000)).await;
    s.commit("o1", T0 + 500).await.unwrap();
    assert_eq!(s.expire_holds(T0 + 100_000).await.unwrap(), 0);
    assert_eq!(level(s, "n1", "A", T0 + 100_000).await.reserved, 4);
    assert_eq!(
        s.get_reservation("o1", T0 + 100_000)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Committed
    );
}

pub async fn shipments_reduce_on_hand_and_allocation(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    created(
        s,
        hold(
            "o1",
            vec![alloc("l1", "A", "n1", 2), alloc("l2", "A", "n1", 3)],
            T0 + 1000,
        ),
    )
    .await;
    s.commit("o1", T0).await.unwrap();
    let r = s
        .apply_updates(&[shipment("n1", "A", 2, "o1", 4)], T0)
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied]);
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reserved, l.last_sequence), (6, 1, 2));
    let res = s.get_reservation("o1", T0).await.unwrap().unwrap();
    assert_eq!(res.state, ReservationState::Committed);
    let shipped: u64 = res.allocations.iter().map(|a| a.shipped).sum();
    assert_eq!(shipped, 4);
    let r = s
        .apply_updates(&[shipment("n1", "A", 3, "o1", 1)], T0)
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied]);
    let res = s.get_reservation("o1", T0).await.unwrap().unwrap();
    assert_eq!(res.state, ReservationState::Fulfilled);
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reserved, l.ats(false)), (5, 0, 5));
    // nothing left to release
    let after = s.release("o1", &[], T0).await.unwrap();
    assert_eq!(after.state, ReservationState::Fulfilled);
    assert_eq!(level(s, "n1", "A", T0).await.on_hand, 5);
}

pub async fn bad_shipments_are_rejected(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 2)], T0 + 1000)).await;
    let updates = [
        shipment("n1", "A", 2, "o1", 1),   // held, not committed
        shipment("n1", "A", 3, "nope", 1), // unknown order
    ];
    let r = s.apply_updates(&updates, T0).await.unwrap();
    assert!(
        matches!(&r[0], UpdateResult::Rejected(why) if why.contains("held")),
        "{r:?}"
    );
    assert!(
        matches!(&r[1], UpdateResult::Rejected(why) if why.contains("no reservation")),
        "{r:?}"
    );
    s.commit("o1", T0).await.unwrap();
    let r = s
        .apply_updates(
            &[
                shipment("n1", "A", 4, "o1", 3),
                shipment("n2", "A", 1, "o1", 1),
            ],
            T0,
        )
        .await
        .unwrap();
    assert!(
        matches!(&r[0], UpdateResult::Rejected(why) if why.contains("outstanding")),
        "{r:?}"
    );
    assert!(matches!(&r[1], UpdateResult::Rejected(_)), "{r:?}");
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reserved, l.last_sequence), (10, 2, 1));
}

pub async fn snapshots_never_wipe_reservations(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 1000)).await;
    s.apply_updates(&[snapshot("n1", "A", 2, 8, None)], T0)
        .await
        .unwrap();
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reserved, l.ats(false)), (8, 3, 5));
    s.apply_updates(&[snapshot("n1", "A", 3, 2, None)], T0)
        .await
        .unwrap();
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reserved, l.ats(false)), (2, 3, 0));
}

pub async fn concurrent_reserves_never_oversell(store: Arc<dyn StockStore>) {
    seed(store.as_ref(), "n1", "A", 7, 0).await;
    seed(store.as_ref(), "n2", "A", 5, 1).await;
    seed(store.as_ref(), "n1", "B", 9, 0).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let node = if i % 2 == 0 { "n1" } else { "n2" };
            let request = hold(
                &format!("o{i}"),
                vec![alloc("l1", "A", node, 1 + i % 2), alloc("l2", "B", "n1", 1)],
                T0 + 60_000,
            );
            store.reserve(request, T0).await.unwrap()
        }));
    }
    let mut held_a = [0u64; 2];
    let mut held_b = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        if let ReserveOutcome::Created(_) = task.await.unwrap() {
            held_a[i % 2] += 1 + (i as u64 % 2);
            held_b += 1;
        }
    }
    let s = store.as_ref();
    let (a1, a2, b1) = (
        level(s, "n1", "A", T0).await,
        level(s, "n2", "A", T0).await,
        level(s, "n1", "B", T0).await,
    );
    assert_eq!(a1.reserved, held_a[0]);
    assert_eq!(a2.reserved, held_a[1]);
    assert_eq!(b1.reserved, held_b);
    // 32 orders compete for 7 units at n1, 32 for two pairs at n2 (5 less 1 safety stock);
    // B has exactly enough for all winners, so every unit that can be held is, and no more
    assert_eq!((a1.reserved, a2.reserved, b1.reserved), (7, 4, 9));
}

pub async fn holds_consume_and_return_node_capacity(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 100, 0).await;
    seed(s, "n1", "B", 100, 0).await;
    let limited = |order: &str, allocations, limit| {
        let mut request = hold(order, allocations, T0 + 1000);
        request.capacity_limits = vec![("n1".into(), limit)];
        request
    };
    created(
        s,
        limited(
            "o1",
            vec![alloc("l1", "A", "n1", 3), alloc("l2", "B", "n1", 2)],
            8,
        ),
    )
    .await;
    assert_eq!(s.capacity_used(20_000, T0).await.unwrap()["n1"], 5);
    assert!(s.capacity_used(20_001, T0).await.unwrap().is_empty());
    let outcome = s
        .reserve(limited("o2", vec![alloc("l1", "A", "n1", 4)], 8), T0)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ReserveOutcome::OverCapacity {
            node_id: "n1".into(),
            wanted: 4,
            available: 3
        }
    );
    assert_eq!(level(s, "n1", "A", T0).await.reserved, 3);
    // released units give their capacity back; expired holds too
    s.release("o1", &["l2".into()], T0).await.unwrap();
    assert_eq!(s.capacity_used(20_000, T0).await.unwrap()["n1"], 3);
    created(s, limited("o3", vec![alloc("l1", "A", "n1", 5)], 8)).await;
    assert_eq!(s.capacity_used(20_000, T0).await.unwrap()["n1"], 8);
    assert!(s.capacity_used(20_000, T0 + 1000).await.unwrap().is_empty());
}

pub async fn read_state_returns_stock_and_capacity_after_expiry(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    seed(s, "n2", "B", 4, 1).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 1000)).await;
    created(s, hold("o2", vec![alloc("l1", "B", "n2", 2)], T0 + 9000)).await;
    let skus = ["A".to_owned(), "B".to_owned(), "C".to_owned()];
    let (stock, used) = s.read_state(&skus, 20_000, T0).await.unwrap();
    assert_eq!(stock, s.read_stock(&skus, T0).await.unwrap());
    assert_eq!(used, s.capacity_used(20_000, T0).await.unwrap());
    assert_eq!(stock["A"]["n1"].reserved, 3);
    assert!(stock["C"].is_empty());
    assert_eq!((used["n1"], used["n2"]), (3, 2));
    // o1 expires: both parts of the state show its units back
    let (stock, used) = s.read_state(&skus, 20_000, T0 + 1000).await.unwrap();
    assert_eq!(stock["A"]["n1"].reserved, 0);
    assert_eq!(stock["B"]["n2"].reserved, 2);
    assert_eq!(used.get("n1"), None);
    assert_eq!(used["n2"], 2);
}

fn rejected_for(result: &UpdateResult, field: &str, words: &str) -> bool {
    matches!(result, UpdateResult::Rejected(why) if why.starts_with(&format!("{field}: ")) && why.contains(words))
}

pub async fn figures_above_the_limit_are_rejected_and_change_nothing(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 2).await;
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 60_000)).await;
    s.commit("o1", T0).await.unwrap();
    let over = MAX_STOCK_UNITS + 1;
    let updates = [
        snapshot("n1", "A", 2, over, None),
        snapshot("n1", "A", 3, 5, Some(over)),
        snapshot("n1", "A", 4, u64::MAX, Some(u64::MAX)),
        delta("n1", "A", 5, over as i64),
        delta("n1", "A", 6, -(over as i64)),
        delta("n1", "A", 7, i64::MAX),
        delta("n1", "A", 8, i64::MIN),
        shipment("n1", "A", 9, "o1", over),
        // a level the sku never had is not made either
        snapshot("n2", "A", 1, over, Some(0)),
    ];
    let r = s.apply_updates(&updates, T0).await.unwrap();
    let limit = format!("the limit of {MAX_STOCK_UNITS}");
    assert!(
        rejected_for(&r[0], "quantity", &format!("{over} is above {limit}")),
        "{r:?}"
    );
    assert!(
        rejected_for(&r[1], "safety_stock", &format!("{over} is above {limit}")),
        "{r:?}"
    );
    assert!(rejected_for(&r[2], "quantity", &limit), "{r:?}");
    for result in &r[3..7] {
        assert!(rejected_for(result, "quantity", &limit), "{r:?}");
    }
    assert!(rejected_for(&r[7], "quantity", &limit), "{r:?}");
    assert!(rejected_for(&r[8], "quantity", &limit), "{r:?}");
    let view = s.read_stock(&["A".into()], T0).await.unwrap();
    assert_eq!(view["A"].len(), 1, "{view:?}");
    let l = view["A"]["n1"];
    assert_eq!(
        (l.on_hand, l.reserved, l.safety_stock, l.last_sequence),
        (10, 3, 2, 1)
    );
    let res = s.get_reservation("o1", T0).await.unwrap().unwrap();
    assert_eq!(res.allocations[0].shipped, 0);
    // no sequence was used up: valid updates at the same sequences apply
    let r = s
        .apply_updates(
            &[snapshot(
                "n1",
                "A",
                2,
                MAX_STOCK_UNITS,
                Some(MAX_STOCK_UNITS),
            )],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied]);
    let l = level(s, "n1", "A", T0).await;
    assert_eq!(
        (l.on_hand, l.reserved, l.safety_stock, l.last_sequence),
        (MAX_STOCK_UNITS, 3, MAX_STOCK_UNITS, 2)
    );
}

pub async fn deltas_stay_within_zero_and_the_limit(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    let max = MAX_STOCK_UNITS as i64;
    // up to exactly the limit applies; one more unit does not
    let r = s
        .apply_updates(
            &[
                delta("n1", "A", 2, max - 10),
                delta("n1", "A", 3, 1),
                delta("n1", "A", 4, max),
            ],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(r[0], UpdateResult::Applied);
    for result in &r[1..] {
        assert!(
            rejected_for(
                result,
                "quantity",
                &format!(
                    "would take on hand of A at n1 above the limit of {MAX_STOCK_UNITS} (on hand {MAX_STOCK_UNITS})"
                )
            ),
            "{r:?}"
        );
    }
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.last_sequence), (MAX_STOCK_UNITS, 2));
    // all of it can go, and no more
    let r = s
        .apply_updates(
            &[
                delta("n1", "A", 3, -max),
                delta("n1", "A", 4, -1),
                delta("n1", "A", 5, 1),
            ],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(r[0], UpdateResult::Applied);
    assert!(rejected_for(&r[1], "quantity", "below zero"), "{r:?}");
    assert_eq!(r[2], UpdateResult::Applied);
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.last_sequence), (1, 5));
    // a delta to a node without a level starts from zero
    let r = s
        .apply_updates(&[delta("n2", "A", 1, -1), delta("n2", "A", 2, max)], T0)
        .await
        .unwrap();
    assert!(rejected_for(&r[0], "quantity", "below zero"), "{r:?}");
    assert_eq!(r[1], UpdateResult::Applied);
    assert_eq!(level(s, "n2", "A", T0).await.on_hand, MAX_STOCK_UNITS);
}

pub async fn network_totals_stay_exact(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    let max = MAX_STOCK_UNITS;
    // figures with low bits set, near the limit, where a float would round
    let rows = [
        ("n1", max),
        ("n2", max - 1),
        ("n3", max - 3),
        ("n4", 999_999_999_997),
        ("n5", 1),
    ];
    let updates: Vec<_> = rows
        .iter()
        .map(|(node, units)| snapshot(node, "A", 1, *units, Some(units / 7)))
        .collect();
    let r = s.apply_updates(&updates, T0).await.unwrap();
    assert!(r.iter().all(|r| *r == UpdateResult::Applied), "{r:?}");
    // most of every level held at once, then a little more of one
    let allocations: Vec<_> = rows
        .iter()
        .map(|(node, units)| alloc(&format!("l-{node}"), "A", node, units - units / 7))
        .collect();
    created(s, hold("o1", allocations, T0 + 60_000)).await;
    let view = s.read_stock(&["A".into()], T0).await.unwrap();
    let mut on_hand = 0u64;
    let mut reserved = 0u64;
    for (node, units) in rows {
        let l = view["A"][node];
        assert_eq!(
            (l.on_hand, l.reserved, l.safety_stock, l.ats(false)),
            (units, units - units / 7, units / 7, 0),
            "{node}"
        );
        assert_eq!(l.ats(true), units / 7, "{node}");
        on_hand += l.on_hand;
        reserved += l.reserved;
    }
    let expected: u64 = rows.iter().map(|r| r.1).sum();
    assert_eq!(on_hand, expected);
    assert_eq!(expected, 3_999_999_999_994);
    assert_eq!(reserved, rows.iter().map(|(_, u)| u - u / 7).sum::<u64>());
    // a delta on top, then the hold given back: every figure exact again
    let r = s
        .apply_updates(&[delta("n4", "A", 2, 3)], T0)
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied]);
    s.release("o1", &[], T0).await.unwrap();
    let view = s.read_stock(&["A".into()], T0).await.unwrap();
    assert_eq!(view["A"]["n4"].on_hand, max);
    let total: u64 = view["A"].values().map(|l| l.on_hand).sum();
    assert_eq!(total, expected + 3);
    assert!(view["A"].values().all(|l| l.reserved == 0), "{view:?}");
}

pub async fn holds_beyond_the_limit_are_refused(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", MAX_STOCK_UNITS, 0).await;
    let outcome = s
        .reserve(
            hold(
                "o1",
                vec![
                    alloc("l1", "A", "n1", MAX_STOCK_UNITS),
                    alloc("l2", "A", "n1", u64::MAX),
                ],
                T0 + 1000,
            ),
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ReserveOutcome::Insufficient {
            sku: "A".into(),
            node_id: "n1".into(),
            wanted: u64::MAX,
            available: MAX_STOCK_UNITS,
        }
    );
    assert!(s.get_reservation("o1", T0).await.unwrap().is_none());
    // the whole level, to the unit, can be held
    let r = created(
        s,
        hold(
            "o2",
            vec![alloc("l1", "A", "n1", MAX_STOCK_UNITS)],
            T0 + 1000,
        ),
    )
    .await;
    assert_eq!(r.allocations[0].quantity, MAX_STOCK_UNITS);
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.reserved, l.ats(true)), (MAX_STOCK_UNITS, 0));
}

pub async fn units_of_an_expired_hold_can_be_reserved_before_a_sweep(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    let limited = |order: &str, expires_at| {
        let mut request = hold(order, vec![alloc("l1", "A", "n1", 10)], expires_at);
        request.capacity_limits = vec![("n1".into(), 10)];
        request
    };
    created(s, limited("o1", T0 + 1000)).await;
    // at its expiry, a read shows the units and the capacity free again
    let (stock, used) = s
        .read_state(&["A".into()], 20_000, T0 + 1000)
        .await
        .unwrap();
    assert_eq!(stock["A"]["n1"].ats(false), 10);
    assert!(used.is_empty(), "{used:?}");
    // so an order planned on that read gets them, whether or not a sweep has run
    let outcome = s
        .reserve(limited("o2", T0 + 60_000), T0 + 1000)
        .await
        .unwrap();
    assert!(matches!(outcome, ReserveOutcome::Created(_)), "{outcome:?}");
    let l = level(s, "n1", "A", T0 + 1000).await;
    assert_eq!((l.reserved, l.ats(false)), (10, 0));
    assert_eq!(s.capacity_used(20_000, T0 + 1000).await.unwrap()["n1"], 10);
    assert_eq!(
        s.get_reservation("o1", T0 + 1000)
            .await
            .unwrap()
            .unwrap()
            .state,
        ReservationState::Expired
    );
}

pub async fn releases_keep_the_capacity_of_shipped_units(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    let mut request = hold(
        "o1",
        vec![alloc("l1", "A", "n1", 3), alloc("l2", "A", "n1", 2)],
        T0 + 60_000,
    );
    request.capacity_limits = vec![("n1".into(), 10)];
    created(s, request).await;
    s.commit("o1", T0).await.unwrap();
    let used = |now| async move {
        s.capacity_used(20_000, now)
            .await
            .unwrap()
            .get("n1")
            .copied()
    };
    assert_eq!(used(T0).await, Some(5));
    let r = s
        .apply_updates(&[shipment("n1", "A", 2, "o1", 2)], T0)
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied]);
    // the node did the work of shipped units: their capacity stays used
    assert_eq!(used(T0).await, Some(5));
    let r = s.release("o1", &["l1".into()], T0).await.unwrap();
    assert_eq!(r.allocations[0].outstanding(), 0);
    assert_eq!(used(T0).await, Some(4));
    let r = s.release("o1", &[], T0).await.unwrap();
    assert_eq!(r.state, ReservationState::Fulfilled);
    assert_eq!(used(T0).await, Some(2));
    // again changes nothing
    s.release("o1", &[], T0).await.unwrap();
    s.release("o1", &["l2".into()], T0).await.unwrap();
    assert_eq!(used(T0).await, Some(2));
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reserved), (8, 0));
}
