//! Conformance cases of the bound on stock figures ([`MAX_STOCK_UNITS`]): nothing beyond it is
//! written, nothing wraps, and totals stay exact.

use super::*;

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
