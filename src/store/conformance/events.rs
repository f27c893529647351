//! Conformance cases of the event log: every change reported once, in order per sku and per
//! order, read back from any cursor, and cursors refused where reading on would be wrong.

use super::*;
use crate::clock::Clock;
use crate::events::alerts::AlertCheck;
use crate::events::{Change, CursorError, Event, EventId, EventKind};
use crate::store::AlertTurns;

/// The log from the start, once it holds at least `n` events (a cluster moves outboxes to the
/// stream a moment after the change), within two seconds.
pub(super) async fn log_of(store: &dyn StockStore, n: usize) -> Vec<Arc<Event>> {
    let mut events = Vec::new();
    for _ in 0..200 {
        events = store.read_events(None, 1000).await.unwrap().events;
        if events.len() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    events
}

fn order_kinds(events: &[Arc<Event>], order: &str) -> Vec<(EventKind, ReservationState)> {
    events
        .iter()
        .filter_map(|e| match &e.change {
            Change::Reservation(r) if r.order_id == order => Some((e.kind, r.state)),
            _ => None,
        })
        .collect()
}

fn stock_levels(events: &[Arc<Event>], sku: &str) -> Vec<(String, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match &e.change {
            Change::Stock(s) if s.sku == sku => {
                Some((s.node_id.clone(), s.level.on_hand, s.level.reserved))
            }
            _ => None,
        })
        .collect()
}

pub async fn every_change_is_reported_once_in_order(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 10, 0).await;
    let r = created(s, hold("o1", vec![alloc("1", "A", "n1", 3)], T0 + 60_000)).await;
    assert_eq!(r.state, ReservationState::Held);
    s.commit("o1", T0).await.unwrap();
    // a repeated commit changes nothing, so reports nothing
    s.commit("o1", T0).await.unwrap();
    let r = s
        .apply_updates(&[shipment("n1", "A", 2, "o1", 2)], T0)
        .await
        .unwrap();
    assert_eq!(r, vec![UpdateResult::Applied]);
    s.release("o1", &[], T0).await.unwrap();
    s.release("o1", &[], T0).await.unwrap();
    // a stale update changes nothing
    s.apply_updates(&[snapshot("n1", "A", 1, 50, None)], T0)
        .await
        .unwrap();
    created(s, hold("o2", vec![alloc("1", "A", "n1", 4)], T0 + 1000)).await;
    assert_eq!(s.expire_holds(T0 + 1000).await.unwrap(), 1);
    s.expire_holds(T0 + 2000).await.unwrap();
    let events = log_of(s, 7).await;
    assert_eq!(events.len(), 7, "{events:#?}");
    use EventKind::*;
    use ReservationState as St;
    assert_eq!(
        order_kinds(&events, "o1"),
        vec![
            (ReservationCreated, St::Held),
            (ReservationCommitted, St::Committed),
            // two of three shipped, the third given back
            (ReservationReleased, St::Fulfilled),
        ]
    );
    assert_eq!(
        order_kinds(&events, "o2"),
        vec![
            (ReservationCreated, St::Held),
            (ReservationExpired, St::Expired)
        ]
    );
    assert_eq!(
        stock_levels(&events, "A"),
        vec![("n1".to_owned(), 10, 0), ("n1".to_owned(), 8, 1)]
    );
    let created_o1 = events
        .iter()
        .find(|e| e.kind == ReservationCreated && e.order_id() == Some("o1"))
        .unwrap();
    match &created_o1.change {
        Change::Reservation(r) => {
            assert_eq!(r.segment, "standard");
            assert_eq!(r.allocations, vec![alloc("1", "A", "n1", 3)]);
        }
        other => panic!("{other:?}"),
    }
    // ids order the log; keys are unique
    for pair in events.windows(2) {
        assert!(
            pair[0].id < pair[1].id,
            "{:?} then {:?}",
            pair[0].id,
            pair[1].id
        );
    }
    let mut keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), events.len());
}

pub async fn the_log_reads_on_from_any_cursor(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    for (seq, node) in ["n1", "n2", "n3", "n4", "n5"].iter().enumerate() {
        seed(s, node, "A", seq as u64 + 1, 0).await;
    }
    let all = log_of(s, 5).await;
    assert_eq!(all.len(), 5);
    let page = s.read_events(Some(all[1].id), 2).await.unwrap();
    let ids: Vec<EventId> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![all[2].id, all[3].id]);
    assert_eq!(page.last, Some(all[4].id));
    let rest = s.read_events(Some(all[4].id), 10).await.unwrap();
    assert!(rest.events.is_empty());
    // from before the first event: everything, nothing trimmed yet
    let from_zero = s.read_events(Some(EventId::ZERO), 10).await.unwrap();
    assert_eq!(from_zero.events.len(), 5);
    let future = all[4].id.next().next();
    match s.read_events(Some(future), 10).await {
        Err(StoreError::Cursor(CursorError::Future { after, .. })) => assert_eq!(after, future),
        other => panic!("expected a future cursor refused, got {other:?}"),
    }
}

pub async fn a_cursor_before_what_is_kept_is_refused(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    seed(s, "n1", "A", 1, 0).await;
    seed(s, "n2", "A", 2, 0).await;
    let all = log_of(s, 2).await;
    assert_eq!(all.len(), 2);
    // far beyond any retention age, by the store's clock or Redis's
    let later = T0.max(crate::clock::SystemClock.now_millis()) + 10 * 366 * 86_400_000;
    s.trim_events(later).await.unwrap();
    match s.read_events(Some(all[0].id), 10).await {
        Err(StoreError::Cursor(CursorError::Trimmed { after, .. })) => assert_eq!(after, all[0].id),
        other => panic!("expected a trimmed cursor refused, got {other:?}"),
    }
    // nothing after the newest was lost: reading on from it is fine
    let page = s.read_events(Some(all[1].id), 10).await.unwrap();
    assert!(page.events.is_empty());
    assert_eq!(page.last, Some(all[1].id));
}

/// A look at the alert states of `sku` from its levels as they are now.
async fn looked(store: &dyn StockStore, sku: &str, checks: &[AlertCheck]) -> AlertTurns {
    let levels = store
        .read_stored_levels(&[sku.to_owned()], T0)
        .await
        .unwrap()
        .remove(sku)
        .unwrap_or_default();
    store
        .record_alerts(sku, &levels, checks, T0)
        .await
        .unwrap()
        .expect("nothing changed the levels since they were read")
}

pub async fn each_alert_crossing_is_reported_once(store: Arc<dyn StockStore>) {
    let check = |ats: u64| AlertCheck::node("n1", ats, 5, 2);
    // many replicas looking at once at the same fall: one report
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { looked(store.as_ref(), "A", &[check(3)]).await })
        })
        .collect();
    let mut reported = Vec::new();
    for c in calls {
        reported.extend(c.await.unwrap());
    }
    // every look leaves the state low; one of them reported it
    assert!(reported.iter().all(|(low, _)| *low), "{reported:?}");
    let kinds: Vec<EventKind> = reported.iter().filter_map(|(_, k)| *k).collect();
    assert_eq!(kinds, vec![EventKind::LowStock]);
    let s = store.as_ref();
    // within the hysteresis: nothing, still low; above it: recovered, once
    for ats in [6, 7, 4, 7] {
        assert_eq!(
            looked(s, "A", &[check(ats)]).await,
            vec![(true, None)],
            "{ats}"
        );
    }
    assert_eq!(
        looked(s, "A", &[check(8)]).await,
        vec![(false, Some(EventKind::StockRecovered))]
    );
    assert_eq!(looked(s, "A", &[check(9)]).await, vec![(false, None)]);
    // states are per sku
    assert_eq!(
        looked(s, "B", &[check(0)]).await,
        vec![(true, Some(EventKind::LowStock))]
    );
    // with no threshold any more, a low state ends whatever the ATS, and none begins
    let unwatched = AlertCheck::unwatched_node("n1", 0);
    assert_eq!(
        looked(s, "B", std::slice::from_ref(&unwatched)).await,
        vec![(false, Some(EventKind::StockRecovered))]
    );
    assert_eq!(looked(s, "B", &[unwatched]).await, vec![(false, None)]);
    let events = log_of(s, 4).await;
    // in order per sku (a cluster keeps no order between skus)
    let of = |sku: &str| -> Vec<(EventKind, u64, String, Option<u64>)> {
        events
            .iter()
            .filter_map(|e| match &e.change {
                Change::Alert(a) if a.sku == sku => {
                    Some((e.kind, a.ats, a.node_id.clone(), a.threshold))
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        of("A"),
        vec![
            (EventKind::LowStock, 3, "n1".to_owned(), Some(5)),
            (EventKind::StockRecovered, 8, "n1".to_owned(), Some(5)),
        ]
    );
    assert_eq!(
        of("B"),
        vec![
            (EventKind::LowStock, 0, "n1".to_owned(), Some(5)),
            (EventKind::StockRecovered, 0, "n1".to_owned(), None),
        ]
    );
}

pub async fn an_alert_look_from_levels_since_changed_turns_nothing(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    s.apply_updates(&[snapshot("n1", "A", 1, 10, None)], T0)
        .await
        .unwrap();
    let before = s
        .read_stored_levels(&["A".to_owned()], T0)
        .await
        .unwrap()
        .remove("A")
        .unwrap();
    // the level falls to 3 (one replica reports it low), while another replica still holds a
    // read from before: its look, of a recovery at 10, must turn nothing
    s.apply_updates(&[snapshot("n1", "A", 2, 3, None)], T0)
        .await
        .unwrap();
    let check = |ats: u64| AlertCheck::node("n1", ats, 5, 2);
    assert_eq!(
        looked(s, "A", &[check(3)]).await,
        vec![(true, Some(EventKind::LowStock))]
    );
    assert_eq!(
        s.record_alerts("A", &before, &[check(10)], T0)
            .await
            .unwrap(),
        None
    );
    // nor does a read that misses a node the sku has since gained
    s.apply_updates(&[snapshot("n2", "A", 1, 4, None)], T0)
        .await
        .unwrap();
    let mut one_node = before.clone();
    one_node.get_mut("n1").unwrap().on_hand = 3;
    one_node.get_mut("n1").unwrap().last_sequence = 2;
    assert_eq!(
        s.record_alerts("A", &one_node, &[check(10)], T0)
            .await
            .unwrap(),
        None
    );
    // a hold moves the levels too
    let held = s
        .read_stored_levels(&["A".to_owned()], T0)
        .await
        .unwrap()
        .remove("A")
        .unwrap();
    created(s, hold("o1", vec![alloc("l1", "A", "n2", 1)], T0 + 60_000)).await;
    assert_eq!(
        s.record_alerts("A", &held, &[check(10)], T0).await.unwrap(),
        None
    );
    // the state stays as the up-to-date look left it, and only its turn is reported
    assert_eq!(looked(s, "A", &[check(3)]).await, vec![(true, None)]);
    // a hold past its expiry that no sweep has given back yet is no change: a look from the
    // levels as stored turns states
    let due = T0 + 60_001;
    let stored = s
        .read_stored_levels(&["A".to_owned()], due)
        .await
        .unwrap()
        .remove("A")
        .unwrap();
    assert!(
        s.record_alerts("A", &stored, &[check(3)], due)
            .await
            .unwrap()
            .is_some()
    );
    let alerts: Vec<_> = log_of(s, 3)
        .await
        .iter()
        .filter(|e| e.kind.is_alert())
        .map(|e| e.kind)
        .collect();
    assert_eq!(alerts, vec![EventKind::LowStock]);
}

pub async fn one_holder_has_a_lease_and_only_it_saves_the_cursor(store: Arc<dyn StockStore>) {
    let s = store.as_ref();
    assert!(s.take_lease("hook", "a", 60_000, T0).await.unwrap());
    assert!(
        !s.take_lease("hook", "b", 60_000, T0).await.unwrap(),
        "held by a"
    );
    // renewing is taking again
    assert!(s.take_lease("hook", "a", 60_000, T0).await.unwrap());
    assert_eq!(s.cursor("hook").await.unwrap(), None);
    let at = EventId { ms: 5, seq: 1 };
    assert!(s.save_cursor("hook", "a", at, T0).await.unwrap());
    assert!(
        !s.save_cursor("hook", "b", EventId { ms: 9, seq: 0 }, T0)
            .await
            .unwrap()
    );
    assert_eq!(s.cursor("hook").await.unwrap(), Some(at));
    // only its holder lets a lease go; let go, it passes to the next holder at once
    assert!(!s.take_lease("hook", "b", 0, T0).await.unwrap());
    assert!(!s.take_lease("hook", "b", 60_000, T0).await.unwrap());
    assert!(s.take_lease("hook", "a", 0, T0).await.unwrap());
    assert!(s.take_lease("hook", "b", 60_000, T0).await.unwrap());
    assert!(
        !s.save_cursor("hook", "a", EventId { ms: 7, seq: 0 }, T0 + 20)
            .await
            .unwrap()
    );
    assert_eq!(s.cursor("hook").await.unwrap(), Some(at));
    // leases are by name
    assert!(s.take_lease("other", "a", 60_000, T0 + 20).await.unwrap());
    // a lease not renewed passes to the next holder once it runs out
    assert!(s.take_lease("brief", "a", 1, T0).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(s.take_lease("brief", "b", 60_000, T0 + 20).await.unwrap());
}
