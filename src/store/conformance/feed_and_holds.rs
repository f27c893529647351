//! Conformance cases of feeds (snapshots, deltas, shipments) and of holds: reserve, commit,
//! release, expiry.

use super::*;

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

pub async fn snapshots_set_keep_and_clear_the_reorder_point(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    let with = |seq, on_hand, rp| StockUpdate {
        kind: UpdateKind::Snapshot {
            on_hand,
            safety_stock: None,
            reorder_point: rp,
        },
        ..snapshot("n1", "A", seq, on_hand, None)
    };
    seed(s, "n1", "A", 10, 0).await;
    assert_eq!(level(s, "n1", "A", T0).await.reorder_point, None);
    let r = s
        .apply_updates(&[with(2, 9, ReorderPoint::Set(4))], T0)
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied]);
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reorder_point), (9, Some(4)));
    // holds, releases, shipments and deltas rewrite the level and keep it
    created(s, hold("o1", vec![alloc("l1", "A", "n1", 3)], T0 + 1000)).await;
    s.commit("o1", T0).await.unwrap();
    let r = s
        .apply_updates(
            &[shipment("n1", "A", 3, "o1", 1), delta("n1", "A", 4, -1)],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied, UpdateResult::Applied]);
    s.release("o1", &[], T0).await.unwrap();
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reserved, l.reorder_point), (7, 0, Some(4)));
    // a snapshot that does not name it keeps it; a stale one changes nothing
    let r = s
        .apply_updates(
            &[
                with(5, 8, ReorderPoint::Keep),
                with(5, 1, ReorderPoint::Set(99)),
            ],
            T0,
        )
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied, UpdateResult::Stale]);
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reorder_point), (8, Some(4)));
    // 0 is a reorder point like any other; clearing removes it
    s.apply_updates(&[with(6, 8, ReorderPoint::Set(0))], T0)
        .await
        .unwrap();
    assert_eq!(level(s, "n1", "A", T0).await.reorder_point, Some(0));
    s.apply_updates(&[with(7, 8, ReorderPoint::Clear)], T0)
        .await
        .unwrap();
    let l = level(s, "n1", "A", T0).await;
    assert_eq!((l.on_hand, l.reorder_point, l.last_sequence), (8, None, 7));
    // each stock event carries the level as it stood, reorder point and all
    let events = super::events::log_of(s, 7 + 3).await;
    let points: Vec<Option<u64>> = events
        .iter()
        .filter_map(|e| match &e.change {
            crate::events::Change::Stock(c) => Some(c.level.reorder_point),
            _ => None,
        })
        .collect();
    assert_eq!(
        points,
        vec![None, Some(4), Some(4), Some(4), Some(4), Some(0), None]
    );
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

pub async fn reserve_respects_protection(store: Arc<dyn StockStore>) {
    use super::super::Protection;
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 1).await;
    seed(s, "n1", "B", 10, 0).await;
    // kept from this request: 3 units, and the larger of 1 unit and 15% of on hand (2)
    let closed = vec![
        Protection {
            units: 3,
            share: 0.0,
        },
        Protection {
            units: 1,
            share: 0.15,
        },
    ];
    let guarded = |order: &str, lines| HoldRequest {
        closed: closed.clone(),
        ..hold(order, lines, T0 + 60_000)
    };
    // 10 on hand, 1 safety stock, 5 kept: 4 may be taken, and a hold of 5 changes nothing
    let outcome = s
        .reserve(
            guarded(
                "o1",
                vec![alloc("l1", "B", "n1", 1), alloc("l2", "A", "n1", 5)],
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
            wanted: 5,
            available: 4,
        }
    );
    assert_eq!(level(s, "n1", "B", T0).await.reserved, 0);
    created(s, guarded("o1", vec![alloc("l1", "A", "n1", 4)])).await;
    // the kept units count against every segment's holds alike: none is left to this one
    let outcome = s
        .reserve(guarded("o2", vec![alloc("l1", "A", "n1", 1)]), T0)
        .await
        .unwrap();
    assert!(
        matches!(outcome, ReserveOutcome::Insufficient { available: 0, .. }),
        "{outcome:?}"
    );
    // a request they are not closed to takes them
    created(s, hold("o3", vec![alloc("l1", "A", "n1", 5)], T0 + 60_000)).await;
    let l = level(s, "n1", "A", T0).await;
    assert_eq!(
        (l.on_hand, l.reserved, l.ats_for(false, &closed)),
        (10, 9, 0)
    );
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
