//! Conformance cases of concurrent reserves, node capacity, and the stock of holds past their
//! expiry before and after a sweep.

use super::*;

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
