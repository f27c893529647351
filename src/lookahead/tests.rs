use super::*;
use crate::domain::{GeoPoint, NodeKind};
use crate::store::StockLevel;

const MADRID: GeoPoint = GeoPoint {
    lat: 40.4165,
    lon: -3.70256,
};
const LISBON: GeoPoint = GeoPoint {
    lat: 38.72509,
    lon: -9.1498,
};

/// A Madrid DC and a Lisbon store.
fn network() -> Network {
    let node =
        |id: &str, kind, at: GeoPoint| crate::sourcing::tests::node(id, kind, at.lat, at.lon, 10);
    Network::new(
        "EUR".into(),
        vec![
            node("wh-madrid", NodeKind::Warehouse, MADRID),
            node("st-lisbon", NodeKind::Store, LISBON),
        ],
    )
}

fn stock(rows: &[(&str, &str, u64)]) -> StockView {
    let mut view = StockView::new();
    for (sku, node, on_hand) in rows {
        view.entry((*sku).into()).or_default().insert(
            (*node).into(),
            StockLevel {
                on_hand: *on_hand,
                ..StockLevel::default()
            },
        );
    }
    view
}

fn order_to(at: GeoPoint, sku: &str, quantity: u64) -> crate::domain::Order {
    let mut o = crate::sourcing::tests::order(&[("1", sku, quantity, None)]);
    o.destination = at;
    o
}

/// No segments: every unit unserved costs `lost_sale_cost`.
fn none() -> crate::domain::Segments {
    crate::domain::Segments::default()
}

fn settings() -> Settings {
    Settings {
        enabled: true,
        ..Settings::default()
    }
}

#[test]
fn cells_hold_nearby_points_and_part_far_ones() {
    let s = settings();
    let here = Region::of(&MADRID, s.region_km);
    let center = here.center(s.region_km);
    assert_eq!(Region::of(&center, s.region_km), here);
    let near = GeoPoint {
        lat: center.lat + 0.2,
        lon: center.lon - 0.2,
    };
    assert_eq!(Region::of(&near, s.region_km), here);
    assert_ne!(Region::of(&LISBON, s.region_km), here);
    // the centre is within a cell of the point
    assert!(here.center(s.region_km).distance_km(&MADRID) < s.region_km);
    assert_eq!(Region::parse(&here.key()), Some(here));
    assert_eq!(Region::parse("1:x"), None);
}

#[test]
fn with_no_demand_learned_every_price_is_zero() {
    let prices = Prices::compute(
        &network(),
        &none(),
        &stock(&[("A", "wh-madrid", 1), ("A", "st-lisbon", 1)]),
        &Demand::default(),
        &settings(),
        0,
    );
    assert!(prices.by_sku.is_empty());
    assert_eq!(prices.price("A", "st-lisbon"), 0.0);
}

#[test]
fn the_window_counts_what_was_placed_within_it_and_nothing_later() {
    let s = settings();
    let window = s.window_secs as Millis * 1000;
    let mut w = DemandWindow::default();
    let seen = Observed::order(&order_to(LISBON, "A", 2), s.region_km);
    w.record(0, &seen, window);
    w.record(10 * MINUTE, &seen, window);
    w.record(40 * MINUTE, &seen, window);
    // at 30 minutes: the first two orders, not the one placed after
    let d = w.read(30 * MINUTE, window);
    assert_eq!((d.orders, d.total_units()), (2, 4));
    assert_eq!(d.covered_ms, 30 * MINUTE);
    // at 70 minutes the first has left the hour
    w.record(70 * MINUTE, &seen, window);
    let d = w.read(70 * MINUTE, window);
    assert_eq!((d.orders, d.total_units()), (3, 6));
    assert_eq!(d.covered_ms, window);
}

/// Records a one-unit order of A to Lisbon (segment `test`) at each of `minutes`.
fn lisbon_asked(w: &mut DemandWindow, s: &Settings, minutes: impl IntoIterator<Item = Millis>) {
    let window = s.window_secs as Millis * 1000;
    for minute in minutes {
        w.record(
            minute * MINUTE,
            &Observed::order(&order_to(LISBON, "A", 1), s.region_km),
            window,
        );
    }
}

#[test]
fn stock_a_region_can_get_nowhere_else_nearly_as_cheap_is_priced() {
    let s = settings();
    let window = s.window_secs as Millis * 1000;
    let mut w = DemandWindow::default();
    // Lisbon asked for 6 units of A in the last hour, Madrid for 1
    lisbon_asked(&mut w, &s, 0..6);
    w.record(
        30 * MINUTE,
        &Observed::order(&order_to(MADRID, "A", 1), s.region_km),
        window,
    );
    let demand = w.read(60 * MINUTE, window);
    // Lisbon's store holds 2 and Madrid's DC 40: the DC can make up any unit it lacks, so the
    // store's units are worth what shipping them from Madrid would cost more
    let plenty = stock(&[("A", "wh-madrid", 40), ("A", "st-lisbon", 2)]);
    let prices = Prices::compute(&network(), &none(), &plenty, &demand, &s, 0);
    assert_eq!(prices.price("A", "wh-madrid"), 0.0);
    let lisbon = prices.price("A", "st-lisbon");
    assert!(lisbon > 0.0, "{prices:?}");
    assert!(lisbon < s.lost_sale_cost, "{prices:?}");
    // with no DC stock, a unit fewer in Lisbon is a sale lost
    let scarce = stock(&[("A", "st-lisbon", 2)]);
    let prices = Prices::compute(&network(), &none(), &scarce, &demand, &s, 0);
    let lost = prices.price("A", "st-lisbon");
    assert!(lost > lisbon, "{lost} vs {lisbon}");
    // skus nobody asked for have no price
    assert_eq!(prices.price("B", "st-lisbon"), 0.0);
}

#[test]
fn the_horizon_scales_the_demand_a_window_saw() {
    let mut s = settings();
    let window = s.window_secs as Millis * 1000;
    let mut w = DemandWindow::default();
    // Lisbon asked for 6 units of A over the last hour; its store holds 2
    lisbon_asked(&mut w, &s, (0..6).map(|i| i * 10));
    let demand = w.read(60 * MINUTE, window);
    let held = stock(&[("A", "wh-madrid", 40), ("A", "st-lisbon", 2)]);
    let lisbon = |horizon_secs: u64, s: &mut Settings| {
        s.horizon_secs = horizon_secs;
        Prices::compute(&network(), &none(), &held, &demand, s, 0).price("A", "st-lisbon")
    };
    // over the next hour 6 are expected, more than the store holds: its units are worth keeping
    assert!(lisbon(3_600, &mut s) > 0.0);
    // over the next ten minutes 1: the store has a unit to spare, and none is priced
    assert_eq!(lisbon(600, &mut s), 0.0);
}

#[test]
fn a_stock_change_counts_from_the_stock_prices_were_computed_against() {
    let basis: Basis = [("A".to_owned(), [("n1".to_owned(), 20)].into())].into();
    let level = |on_hand: u64| StockLevel {
        on_hand,
        safety_stock: 2,
        ..StockLevel::default()
    };
    // ATS 18 from 20: 2 units, less than 5
    assert!(!moved(&basis, "A", "n1", &level(20), 5));
    // ATS 25 and 15: 5 units each way
    assert!(moved(&basis, "A", "n1", &level(27), 5));
    assert!(moved(&basis, "A", "n1", &level(17), 5));
    // a node with none of it before counts from 0
    assert!(moved(&basis, "A", "n2", &level(7), 5));
    // a sku without demand, or 0 units, never moves
    assert!(!moved(&basis, "B", "n1", &level(500), 5));
    assert!(!moved(&basis, "A", "n1", &level(500), 0));
}

#[test]
fn demand_is_served_in_the_lp_only_from_nodes_its_segment_may_use() {
    let s = settings();
    let window = s.window_secs as Millis * 1000;
    let mut w = DemandWindow::default();
    // Lisbon asked for 6 units of A in the last hour, in segment `test`
    lisbon_asked(&mut w, &s, 0..6);
    let demand = w.read(60 * MINUTE, window);
    let held = stock(&[("A", "wh-madrid", 40), ("A", "st-lisbon", 2)]);
    let price = |rules: &crate::domain::SegmentRules| {
        let segments = crate::domain::Segments::new([rules.clone()]);
        Prices::compute(&network(), &segments, &held, &demand, &s, 0).price("A", "st-lisbon")
    };
    let any = crate::sourcing::tests::rules(3, crate::domain::UnfilledPolicy::Backorder);
    // any node: the store's units are worth what shipping them from Madrid would cost more
    let open = price(&any);
    assert!(open > 0.0 && open < any.unfilled_penalty, "{open}");
    // no stores for the segment: its demand cannot use the store's units, which are worth
    // nothing to it
    let mut no_stores = any.clone();
    no_stores.node_kinds.remove(&NodeKind::Store);
    assert_eq!(price(&no_stores), 0.0);
    let mut excluded = any.clone();
    excluded.excluded_nodes.insert("st-lisbon".into());
    assert_eq!(price(&excluded), 0.0);
    // within 100 km only: Madrid cannot serve Lisbon, and a unit fewer in the store is a sale
    // lost
    let mut near = any.clone();
    near.max_distance_km = Some(100.0);
    assert!(price(&near) > open, "{} vs {open}", price(&near));
}

#[test]
fn the_horizon_runs_to_the_replenishment_where_one_is_set() {
    let mut s = settings();
    let hour = 60 * MINUTE;
    assert_eq!(s.horizon_ms(15 * hour), s.horizon_secs as Millis * 1000);
    s.replenished_at = chrono::NaiveTime::from_hms_opt(16, 0, 0);
    let day = 24 * hour;
    // an hour before, the horizon is that hour; from the day before, the rest of the day
    assert_eq!(s.horizon_ms(10 * day + 15 * hour), hour);
    assert_eq!(s.horizon_ms(10 * day + 17 * hour), 23 * hour);
    // at it, the whole day to the next; just before it, a minute at least
    assert_eq!(s.horizon_ms(10 * day + 16 * hour), day);
    assert_eq!(s.horizon_ms(10 * day + 16 * hour - 1_000), MINUTE);
    // and the demand is expected over it: Lisbon's 6 an hour against a store holding 2
    let window = s.window_secs as Millis * 1000;
    let mut w = DemandWindow::default();
    lisbon_asked(&mut w, &s, (0..6).map(|i| i * 10));
    let demand = w.read(hour, window);
    let held = stock(&[("A", "wh-madrid", 40), ("A", "st-lisbon", 2)]);
    let lisbon = |now: Millis| {
        Prices::compute(&network(), &none(), &held, &demand, &s, now).price("A", "st-lisbon")
    };
    assert!(lisbon(10 * day + 15 * hour) > 0.0);
    assert_eq!(lisbon(10 * day + 16 * hour - 10 * MINUTE), 0.0);
}

/// Segment `test` of the sourcing tests, which ships from any node.
fn tested() -> crate::domain::Segments {
    crate::domain::Segments::new([crate::sourcing::tests::rules(
        3,
        crate::domain::UnfilledPolicy::Backorder,
    )])
}

fn calibrated(s: &Settings, stock: &StockView, demand: &Demand) -> Prices {
    let strategies = crate::sourcing::Strategies::new(
        crate::sourcing::Backend::Microlp,
        std::time::Duration::from_secs(5),
    );
    let today = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
    Prices::calibrated(
        &network(),
        &tested(),
        stock,
        demand,
        s,
        0,
        &strategies,
        today,
    )
}

#[test]
fn calibrated_prices_keep_a_store_s_units_for_the_region_it_serves_best_and_are_charged_whole() {
    let mut s = settings();
    s.calibration_rounds = 20;
    let window = s.window_secs as Millis * 1000;
    // no demand learned: no price, calibrated or not
    let held = stock(&[("A", "wh-madrid", 40), ("A", "st-lisbon", 2)]);
    let none_yet = calibrated(&s, &held, &Demand::default());
    assert!(none_yet.by_sku.is_empty());
    // Lisbon asked for 6 units of A in the last hour, two to an order: the store's 2 are worth
    // what shipping from Madrid would cost Lisbon's orders more, and Madrid's DC has plenty to
    // spare
    let mut w = DemandWindow::default();
    for minute in [0, 20, 40] {
        w.record(
            minute * MINUTE,
            &Observed::order(&order_to(LISBON, "A", 2), s.region_km),
            window,
        );
    }
    let demand = w.read(60 * MINUTE, window);
    let prices = calibrated(&s, &held, &demand);
    assert!(prices.charged_whole);
    assert_eq!(prices.price("A", "wh-madrid"), 0.0, "{prices:?}");
    let lisbon = prices.price("A", "st-lisbon");
    assert!(lisbon > 0.0, "{prices:?}");
    // at most what a Lisbon order saves by it: a parcel from Madrid against one from Lisbon
    let cost = |node: &str| {
        let n = network().get(node).unwrap().clone();
        let d = n
            .location
            .distance_km(&Region::of(&LISBON, s.region_km).center(s.region_km));
        n.cost.unit_cost(d) + n.cost.parcel_cost(d)
    };
    assert!(
        lisbon <= cost("wh-madrid") - cost("st-lisbon") + 0.01,
        "{lisbon} against {} and {}",
        cost("wh-madrid"),
        cost("st-lisbon")
    );
    // rounds 0: the LP's prices, charged above the cheapest holder's; the LP spreads a
    // parcel's fixed cost over an order's two units, where calibration prices a unit by what
    // the orders decide, a parcel each
    s.calibration_rounds = 0;
    let lp = calibrated(&s, &held, &demand);
    assert!(!lp.charged_whole);
    assert!(lp.price("A", "st-lisbon") < lisbon, "{lp:?}");
}
