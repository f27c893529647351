//! Look-ahead's data: demand counted by every caller into one window, and price tables
//! published under versions every caller reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{StockStore, T0};
use crate::clock::Millis;
use crate::lookahead::{DemandKey, Observed, Prices, Region};

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;

fn seen(units: &[(&str, i32, u64)]) -> Observed {
    Observed {
        units: units
            .iter()
            .map(|&(sku, row, q)| {
                (
                    DemandKey {
                        sku: sku.into(),
                        region: Region { row, col: -row },
                        segment: "vip".into(),
                    },
                    q,
                )
            })
            .collect(),
        orders: 1,
    }
}

fn units_of(d: &crate::lookahead::Demand, sku: &str, row: i32) -> u64 {
    d.units
        .get(&DemandKey {
            sku: sku.into(),
            region: Region { row, col: -row },
            segment: "vip".into(),
        })
        .copied()
        .unwrap_or(0)
}

pub async fn demand_counts_add_up_within_the_window_and_nothing_later(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    // nothing counted: no demand, over the whole window
    let d = s.read_demand(T0, HOUR).await.unwrap();
    assert_eq!((d.orders, d.total_units()), (0, 0));
    assert_eq!(d.covered_ms, HOUR);
    // eight callers at once count into the same minute
    let calls = (0..8).map(|_| {
        let store = store.clone();
        async move {
            store
                .record_demand(&seen(&[("A", 3, 2), ("B", 3, 1)]), T0, HOUR)
                .await
        }
    });
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    s.record_demand(&seen(&[("A", 4, 5)]), T0 + 20 * MINUTE, HOUR)
        .await
        .unwrap();
    s.record_demand(&seen(&[("A", 3, 7)]), T0 + 50 * MINUTE, HOUR)
        .await
        .unwrap();
    // at +30 minutes: what was counted until then, not what came after
    let d = s.read_demand(T0 + 30 * MINUTE, HOUR).await.unwrap();
    assert_eq!(d.orders, 9);
    assert_eq!(units_of(&d, "A", 3), 16);
    assert_eq!(units_of(&d, "B", 3), 8);
    assert_eq!(units_of(&d, "A", 4), 5);
    assert_eq!(d.covered_ms, 30 * MINUTE);
    // at +90 minutes the first minute has left the window
    let d = s.read_demand(T0 + 90 * MINUTE, HOUR).await.unwrap();
    assert_eq!(d.orders, 1);
    assert_eq!(units_of(&d, "A", 3), 7);
    assert_eq!(units_of(&d, "B", 3), 0);
    assert_eq!(d.covered_ms, HOUR);
}

pub async fn price_tables_are_published_under_rising_versions(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    // none published: version 0 and no prices, or nothing newer than 0
    assert!(s.read_prices(0).await.unwrap().is_none());
    let table = |price: f64| Prices {
        version: 77,
        computed_at: T0,
        by_sku: BTreeMap::from([("A".to_owned(), BTreeMap::from([("n1".to_owned(), price)]))]),
        charged_whole: price > 2.0,
    };
    let first = s.save_prices(&table(1.5)).await.unwrap();
    assert!(first >= 1);
    let read = s.read_prices(0).await.unwrap().expect("a newer table");
    assert_eq!(read.version, first);
    assert_eq!(read.price("A", "n1"), 1.5);
    assert_eq!(read.computed_at, T0);
    assert!(!read.charged_whole);
    // the version in hand: nothing newer
    assert!(s.read_prices(first).await.unwrap().is_none());
    let second = s.save_prices(&table(2.25)).await.unwrap();
    assert!(second > first);
    let read = s.read_prices(first).await.unwrap().expect("a newer table");
    assert_eq!((read.version, read.price("A", "n1")), (second, 2.25));
    // how its prices are charged goes with the table
    assert!(read.charged_whole);
}
