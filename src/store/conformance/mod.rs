//! The behaviour every [`StockStore`] must have, as one suite of cases. Each store runs all of
//! them with [`store_conformance_tests!`](crate::store_conformance_tests), given an async
//! expression that makes a fresh, empty store.
//!
//! The cases are grouped by what they exercise: feeds and holds (`feed_and_holds`), capacity
//! and expiry (`capacity_and_expiry`), the bounds on stock figures (`limits`), the event log
//! (`events`), reroutes (`reroute`), fills (`fill`) and look-ahead's demand and prices
//! (`lookahead`).

use std::sync::Arc;

use super::{
    Allocation, HoldRequest, MAX_STOCK_UNITS, ReorderPoint, ReservationState, ReserveOutcome,
    StockStore, StockUpdate, StoreError, UpdateKind, UpdateResult,
};
use crate::clock::Millis;
use crate::domain::{CostBreakdown, Plan, SolveStatus, StrategyKind};

mod capacity_and_expiry;
mod events;
mod feed_and_holds;
mod fill;
mod limits;
mod lookahead;
mod reroute;

pub use capacity_and_expiry::*;
pub use events::*;
pub use feed_and_holds::*;
pub use fill::*;
pub use limits::*;
pub use lookahead::*;
pub use reroute::*;

/// Generates one `#[tokio::test]` per conformance case for the store made by `$make`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@cases $make;
            snapshot_sets_levels,
            snapshots_set_keep_and_clear_the_reorder_point,
            stale_and_repeated_updates_are_ignored,
            delta_below_zero_is_rejected_and_changes_nothing,
            reserve_holds_stock,
            reserve_is_all_or_nothing,
            reserve_respects_safety_stock,
            reserve_respects_protection,
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
            every_change_is_reported_once_in_order,
            the_log_reads_on_from_any_cursor,
            a_cursor_before_what_is_kept_is_refused,
            each_alert_crossing_is_reported_once,
            an_alert_look_from_levels_since_changed_turns_nothing,
            one_holder_has_a_lease_and_only_it_saves_the_cursor,
            a_reroute_moves_units_to_another_node_once,
            short_picked_units_leave_on_hand,
            a_reroute_that_cannot_hold_changes_nothing,
            units_no_node_ships_are_cancelled_or_wait,
            rerouted_units_of_a_hold_expire_with_it,
            a_fill_holds_waiting_units_once,
            a_fill_keeps_what_better_segments_protect,
            units_cancelled_or_released_wait_no_more,
            the_index_lists_every_waiting_line,
            expected_receipts_are_kept_replaced_and_removed,
            demand_counts_add_up_within_the_window_and_nothing_later,
            price_tables_are_published_under_rising_versions,
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
            reorder_point: ReorderPoint::Keep,
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
        rejected: 0,
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
        opportunity_cost: 0.0,
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
        closed: Vec::new(),
        order: None,
        waiting: Vec::new(),
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
