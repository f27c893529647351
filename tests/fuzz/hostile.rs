//! Requests a hostile or broken client could send: every field of every method drawn from the
//! demo's real values (nodes, skus, segments of `config/`) mixed with the extremes a careless
//! or malicious client sends (empty, blank, 10 KB, NUL and control characters, unicode, integer
//! and float extremes, unknown enum values, huge line counts, bad dates).

use std::fmt;
use std::sync::OnceLock;

use dom_router::api::pb;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select, subsequence};

use crate::wire::Call;

/// The demo network, segments and stock, as shipped in `config/`.
pub struct Demo {
    pub nodes: Vec<String>,
    pub segments: Vec<String>,
    /// (sku, node, on hand, safety stock) of `stock.csv`.
    pub stock: Vec<(String, String, i64, i64)>,
}

pub fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let network = include_str!("../../config/network.toml");
        let nodes = network
            .lines()
            .filter_map(|l| l.strip_prefix("id = \""))
            .map(|l| l.trim_end_matches('"').to_owned())
            .collect();
        let segments = include_str!("../../config/segments.toml")
            .lines()
            .filter_map(|l| l.strip_prefix("[segment."))
            .map(|l| l.trim_end_matches(']').to_owned())
            .collect();
        let stock = include_str!("../../config/stock.csv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("sku,"))
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    f[0].to_owned(),
                    f[1].to_owned(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                )
            })
            .collect();
        Demo {
            nodes,
            segments,
            stock,
        }
    })
}

/// Demo skus the requests of one batch share, so that they meet: one with few nodes, some with
/// many, and one no node has stock of.
pub const SKUS: [&str; 6] = [
    "APP-0003",
    "HOME-0002",
    "APP-0009",
    "SHOE-0001",
    "TEX-0002",
    "NEW-0001",
];
pub const ORDER_IDS: [&str; 2] = ["ord-1", "ord-2"];
const LINE_IDS: [&str; 3] = ["1", "2", "3"];
const STORES: [&str; 3] = ["st-madrid", "st-valencia", "wh-getafe"];
/// Few, so that a batch repeats a reroute (answered as before) and reuses an id for another
/// (ALREADY_EXISTS).
const REROUTE_IDS: [&str; 2] = ["rr-1", "rr-2"];

/// The most units of any stock figure once the bound on stock is in (10^12).
pub const MAX_STOCK: i64 = 1_000_000_000_000;

fn text(s: &str) -> BoxedStrategy<String> {
    Just(s.to_owned()).boxed()
}

/// Strings no id should be: blank, too long, with control characters; and some that are ids
/// however odd they look (unicode, 128 bytes exactly).
pub fn hostile_text() -> BoxedStrategy<String> {
    prop_oneof![
        text(""),
        text(" "),
        text("  "),
        text("\t\n"),
        text("\0"),
        text("o\0"),
        text("APP\0"),
        text("APP-0003\n"),
        text("\u{7f}"),
        text("\u{1b}[2J"),
        text("\u{85}"),
        text("ñandú·✓"),
        text("\u{202e}dlrow"),
        text("\u{200b}"),
        text("😀"),
        text(" APP-0003"),
        text(&"x".repeat(10 * 1024)),
        text(&"é".repeat(5 * 1024)),
        text(&"a".repeat(128)),
        text(&"a".repeat(129)),
        text(&"é".repeat(64)),
        text(&"é".repeat(65)),
        "\\PC{0,12}",
        "[\\x00-\\x1f\\x7f]{1,3}[a-z]{0,3}",
    ]
    .boxed()
}

fn id_from(pool: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        30 => select(pool).prop_map(str::to_owned),
        2 => hostile_text(),
        1 => select(pool).prop_map(|s| format!("{s} ")),
    ]
    .boxed()
}

pub fn sku() -> BoxedStrategy<String> {
    id_from(&SKUS)
}

pub fn order_id() -> BoxedStrategy<String> {
    id_from(&ORDER_IDS)
}

fn line_id() -> BoxedStrategy<String> {
    id_from(&LINE_IDS)
}

pub fn node_id() -> BoxedStrategy<String> {
    let nodes = demo().nodes.clone();
    prop_oneof![
        30 => select(nodes),
        2 => hostile_text(),
        1 => text("wh-nowhere"),
        1 => text("WH-GETAFE"),
    ]
    .boxed()
}

pub fn segment() -> BoxedStrategy<String> {
    let segments = demo().segments.clone();
    prop_oneof![
        20 => select(segments),
        1 => hostile_text(),
        1 => text("gold"),
    ]
    .boxed()
}

/// The integers a client gets wrong: both ends of i64, around the line and stock limits,
/// around 2^53 (where a Lua number stops being exact) and the 32-bit limits.
pub fn extreme_i64() -> BoxedStrategy<i64> {
    prop_oneof![
        select(vec![
            0,
            -1,
            1,
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            i64::MAX - 1,
            1_000_000,
            1_000_001,
            MAX_STOCK,
            MAX_STOCK + 1,
            -MAX_STOCK,
            -MAX_STOCK - 1,
            1 << 53,
            (1 << 53) + 1,
            1 << 62,
            -(1 << 62),
            i64::from(i32::MAX),
            i64::from(u32::MAX),
        ]),
        any::<i64>(),
    ]
    .boxed()
}

fn line_quantity() -> BoxedStrategy<i64> {
    prop_oneof![15 => 1i64..=20, 1 => extreme_i64()].boxed()
}

fn stock_quantity() -> BoxedStrategy<i64> {
    prop_oneof![6 => 0i64..=200, 2 => -50i64..=50, 3 => extreme_i64()].boxed()
}

pub fn sequence() -> BoxedStrategy<u64> {
    prop_oneof![
        8 => 1u64..=40,
        2 => select(vec![
            0,
            1,
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) - 1,
            1 << 53,
            (1 << 53) + 1,
        ]),
        1 => any::<u64>(),
    ]
    .boxed()
}

/// An enum field: its known values mostly, unknown ones sometimes.
fn enum_value(known: std::ops::RangeInclusive<i32>) -> BoxedStrategy<i32> {
    let next = known.end() + 1;
    prop_oneof![
        20 => known,
        1 => select(vec![-1, next, 1000, i32::MAX, i32::MIN]),
    ]
    .boxed()
}

fn coordinate(valid: std::ops::Range<f64>) -> BoxedStrategy<f64> {
    prop_oneof![
        20 => valid,
        1 => select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            90.0,
            -90.0,
            90.000_000_1,
            180.0,
            -180.0,
            180.5,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            -0.0,
            1e-320,
        ]),
    ]
    .boxed()
}

/// Dates as the API takes them, and the near misses.
pub fn deliver_by() -> BoxedStrategy<String> {
    prop_oneof![
        6 => text(""),
        4 => select(vec![
            "2026-03-10", "2026-12-01", "2026-03-02", "2026-03-01", "2030-06-15", "2000-01-01",
            "9999-12-31",
        ])
        .prop_map(str::to_owned),
        2 => select(vec![
            " 2026-12-01", "2026-12-01 ", "0000-01-01", "-001-01-01", "+2026-12-01",
            "1999-12-31", "12026-12-01", "2026-02-30", "2026-13-01", "2026-1-1", "20261201",
            "2026-12-01T00:00:00Z", "2026/12/01", "2026-12-01\0", "２０２６-12-01",
        ])
        .prop_map(str::to_owned),
        1 => prop_oneof![hostile_text(), "[0-9+-]{1,12}".boxed()],
    ]
    .boxed()
}

/// A line; its id is its position in the order unless one is given (a hostile one, or the id
/// of the first line again).
fn line() -> impl Strategy<Value = (Option<String>, pb::OrderLine)> {
    let line_id = prop_oneof![
        24 => Just(None),
        1 => hostile_text().prop_map(Some),
        1 => text("1").prop_map(Some),
    ];
    (
        line_id,
        sku(),
        line_quantity(),
        prop_oneof![16 => text(""), 3 => select(vec!["kit-a", "kit-b"]).prop_map(str::to_owned), 1 => hostile_text()],
    )
        .prop_map(|(line_id, sku, quantity, group)| {
            let line = pb::OrderLine {
                line_id: String::new(),
                sku,
                quantity,
                group,
            };
            (line_id, line)
        })
}

/// `n` distinct one-unit lines over the batch's skus.
fn many_lines(n: usize) -> Vec<pb::OrderLine> {
    (0..n)
        .map(|i| pb::OrderLine {
            line_id: format!("l{i}"),
            sku: SKUS[i % SKUS.len()].to_owned(),
            quantity: 1,
            group: String::new(),
        })
        .collect()
}

fn lines() -> BoxedStrategy<Vec<pb::OrderLine>> {
    prop_oneof![
        24 => vec(line(), 1..=4).prop_map(|lines| {
            lines
                .into_iter()
                .enumerate()
                .map(|(i, (id, line))| pb::OrderLine {
                    line_id: id.unwrap_or_else(|| (i + 1).to_string()),
                    ..line
                })
                .collect()
        }),
        1 => Just(Vec::new()),
        1 => (195usize..=210).prop_map(many_lines),
        1 => select(vec![1_000usize, 5_000]).prop_map(many_lines),
    ]
    .boxed()
}

fn destination() -> BoxedStrategy<Option<pb::Destination>> {
    let location = (coordinate(36.0..43.5), coordinate(-9.3..3.3))
        .prop_map(|(lat, lon)| pb::GeoPoint { lat, lon });
    let country = prop_oneof![
        40 => select(vec!["ES", "PT", "FR"]).prop_map(str::to_owned),
        1 => select(vec!["", "es", "ESP", "E", "E\0", "ÑA", "1A"]).prop_map(str::to_owned),
        1 => hostile_text(),
    ];
    prop_oneof![
        1 => Just(None),
        40 => (prop::option::weighted(0.98, location), country)
            .prop_map(|(location, country)| Some(pb::Destination { location, country })),
    ]
    .boxed()
}

pub fn order() -> BoxedStrategy<Option<pb::Order>> {
    let pickup = prop_oneof![
        6 => text(""),
        4 => select(STORES.to_vec()).prop_map(str::to_owned),
        1 => node_id(),
    ];
    let order = (
        order_id(),
        segment(),
        destination(),
        lines(),
        enum_value(0..=2),
        (pickup, prop::bool::weighted(0.1)),
        any::<bool>(),
        deliver_by(),
    )
        .prop_map(
            |(
                order_id,
                segment,
                destination,
                lines,
                delivery_mode,
                pickup,
                ship_complete,
                deliver_by,
            )| {
                // a pickup store belongs with pickup orders, but not always
                let (pickup, anyway) = pickup;
                let pickup_node_id = if delivery_mode == 2 || anyway {
                    pickup
                } else {
                    String::new()
                };
                pb::Order {
                    order_id,
                    segment,
                    destination,
                    lines,
                    delivery_mode,
                    pickup_node_id,
                    ship_complete,
                    deliver_by,
                }
            },
        );
    prop_oneof![1 => Just(None), 40 => order.prop_map(Some)].boxed()
}

pub fn update() -> BoxedStrategy<pb::StockUpdate> {
    (
        node_id(),
        sku(),
        prop_oneof![4 => Just(1), 4 => Just(2), 1 => Just(3), 1 => Just(4), 1 => enum_value(0..=4)],
        stock_quantity(),
        sequence(),
        (order_id(), prop::bool::weighted(0.1)),
        (
            stock_quantity(),
            prop::bool::weighted(0.4),
            prop::bool::weighted(0.1),
        ),
        (
            prop_oneof![3 => stock_quantity(), 1 => Just(-1i64)],
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.1),
        ),
        (
            // the harness's day is 2026-03-02
            select(vec![
                "2026-03-02",
                "2026-03-20",
                "2027-01-01",
                "2026-03-01",
                "2026-3-9",
                "",
            ]),
            order_id(),
            prop::bool::weighted(0.05),
        ),
    )
        .prop_map(
            |(node_id, sku, kind, quantity, sequence, order_id, safety_stock, reorder, inbound)| {
                // an order id belongs with shipments, a safety stock and a reorder point with
                // snapshots, but
                // not always
                let (order_id, anyway) = order_id;
                let order_id = if kind == 3 || anyway {
                    order_id
                } else {
                    String::new()
                };
                let (safety, given, anyway) = safety_stock;
                let safety_stock = (given && (kind == 1 || anyway)).then_some(safety);
                let (point, given, anyway) = reorder;
                let reorder_point = (given && (kind == 1 || anyway)).then_some(point);
                // a day and a reference belong with inbound updates, but not always
                let (date, reference, anyway) = inbound;
                let (expected_date, reference) = if kind == 4 || anyway {
                    (date.to_owned(), reference)
                } else {
                    (String::new(), String::new())
                };
                pb::StockUpdate {
                    node_id,
                    sku,
                    kind,
                    quantity,
                    sequence,
                    order_id,
                    safety_stock,
                    reorder_point,
                    expected_date,
                    reference,
                }
            },
        )
        .boxed()
}

/// More updates than one SetStock may carry.
fn too_many_updates(n: usize) -> Vec<pb::StockUpdate> {
    (0..n)
        .map(|i| pb::StockUpdate {
            node_id: "wh-getafe".into(),
            sku: SKUS[0].into(),
            kind: pb::StockUpdateKind::Delta as i32,
            quantity: 1,
            sequence: 100 + i as u64,
            ..Default::default()
        })
        .collect()
}

fn availability() -> BoxedStrategy<pb::GetAvailabilityRequest> {
    let skus = prop_oneof![
        12 => vec(sku(), 0..=4),
        1 => Just((0..1_001).map(|i| format!("MANY-{i}")).collect::<Vec<_>>()),
    ];
    let segment = prop_oneof![6 => text(""), 3 => segment()];
    (skus, segment)
        .prop_map(|(skus, segment)| pb::GetAvailabilityRequest { skus, segment })
        .boxed()
}

/// A reroute reason: the known ones mostly, sometimes none or an unknown one. All five are
/// sent to calls that succeed; the harness expects the on hand that short picks and damage
/// take off the node.
fn reroute_reason() -> BoxedStrategy<i32> {
    prop_oneof![
        20 => 1i32..=5,
        1 => Just(pb::RerouteReason::Unspecified as i32),
        1 => select(vec![-1, 6, 1000, i32::MAX, i32::MIN]),
    ]
    .boxed()
}

/// The lines of a reroute: none (every unit at the node), some of the order's line ids with a
/// few units or extreme ones (a line named twice when the pool repeats), or a thousand.
fn reroute_lines() -> BoxedStrategy<Vec<pb::RerouteLine>> {
    let line = (line_id(), prop_oneof![15 => 1i64..=5, 1 => extreme_i64()])
        .prop_map(|(line_id, quantity)| pb::RerouteLine { line_id, quantity });
    prop_oneof![
        8 => Just(Vec::new()),
        12 => vec(line, 1..=3),
        1 => Just(
            (0..1_000)
                .map(|i| pb::RerouteLine {
                    line_id: format!("l{i}"),
                    quantity: 1,
                })
                .collect()
        ),
    ]
    .boxed()
}

fn reroute() -> BoxedStrategy<pb::RerouteRequest> {
    (
        order_id(),
        node_id(),
        reroute_lines(),
        reroute_reason(),
        id_from(&REROUTE_IDS),
    )
        .prop_map(
            |(order_id, node_id, lines, reason, reroute_id)| pb::RerouteRequest {
                order_id,
                node_id,
                lines,
                reason,
                reroute_id,
            },
        )
        .boxed()
}

/// One step of a batch.
#[derive(Clone)]
pub enum Step {
    Call(Call),
    /// A SHIPMENT of `quantity` units of the first allocation the order has when the step runs
    /// (of wh-getafe and the first sku if it has none), so that shipments meet real orders.
    Ship {
        order_id: String,
        quantity: i64,
        sequence: u64,
    },
    /// `request` from the node of one of the order's allocations with units outstanding when
    /// the step runs (the `allocation`th), so that reroutes meet real orders: of the order it
    /// names or, if that has none, of the first of `ORDER_IDS` that has; as it is if none has.
    /// With a `part`, of some units of that allocation's line (one to all of those it has
    /// outstanding) instead of the request's lines.
    Reroute {
        request: pb::RerouteRequest,
        allocation: Index,
        part: Option<Index>,
    },
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Call(call) => call.fmt(f),
            Step::Ship {
                order_id,
                quantity,
                sequence,
            } => write!(
                f,
                "Ship {{ order_id: {}, quantity: {quantity}, sequence: {sequence} }}",
                crate::oracle::shown(order_id)
            ),
            Step::Reroute {
                request,
                allocation,
                part,
            } => {
                Call::Reroute(request.clone()).fmt(f)?;
                write!(
                    f,
                    " at the node of allocation {allocation:?}, part {part:?}"
                )
            }
        }
    }
}

/// Half of them hostile somewhere, half as a checkout sends them, so that reservations are
/// made for the batch's later steps to commit, release and ship.
fn some_order() -> BoxedStrategy<Option<pb::Order>> {
    prop_oneof![order(), plain_order().prop_map(Some)].boxed()
}

pub fn step() -> BoxedStrategy<Step> {
    let call = prop_oneof![
        2 => (some_order(), enum_value(0..=3))
            .prop_map(|(order, strategy)| Call::Quote(pb::QuoteRequest { order, strategy })),
        4 => (
            some_order(),
            prop_oneof![
                10 => Just(0u32),
                2 => select(vec![1u32, 60, 900, 86_400, 86_401, u32::MAX]),
                1 => any::<u32>(),
            ],
            enum_value(0..=3),
        )
            .prop_map(|(order, hold_ttl_seconds, strategy)| {
                Call::Reserve(pb::ReserveRequest { order, hold_ttl_seconds, strategy })
            }),
        2 => order_id().prop_map(|order_id| Call::Commit(pb::CommitRequest { order_id })),
        2 => (order_id(), vec(line_id(), 0..=3))
            .prop_map(|(order_id, line_ids)| Call::Release(pb::ReleaseRequest { order_id, line_ids })),
        1 => reroute().prop_map(Call::Reroute),
        1 => order_id()
            .prop_map(|order_id| Call::GetReservation(pb::GetReservationRequest { order_id })),
        4 => prop_oneof![
            30 => vec(update(), 0..=6),
            1 => Just(too_many_updates(10_001)),
        ]
        .prop_map(|updates| Call::SetStock(pb::SetStockRequest { updates })),
        2 => vec(update(), 0..=6).prop_map(Call::PushStock),
        2 => availability().prop_map(Call::GetAvailability),
        1 => enum_value(0..=4).prop_map(|kind| Call::ListNodes(pb::ListNodesRequest { kind })),
    ];
    prop_oneof![
        10 => call.prop_map(Step::Call),
        1 => (order_id(), stock_quantity(), sequence()).prop_map(|(order_id, quantity, sequence)| {
            Step::Ship { order_id, quantity, sequence }
        }),
        // mostly well formed, for the reroutes that meet an order to get past the checks
        2 => (
            prop_oneof![3 => plain_reroute(), 1 => reroute()],
            any::<Index>(),
            prop::option::weighted(0.4, any::<Index>()),
        )
            .prop_map(|(request, allocation, part)| Step::Reroute { request, allocation, part }),
    ]
    .boxed()
}

pub fn batch() -> BoxedStrategy<Vec<Step>> {
    vec(step(), 1..=8).boxed()
}

/// An order as a well-behaved checkout sends it.
fn plain_order() -> impl Strategy<Value = pb::Order> + Clone {
    let order_id = || select(ORDER_IDS.to_vec()).prop_map(str::to_owned);
    let sku = || select(SKUS.to_vec()).prop_map(str::to_owned);
    let lines = vec((sku(), prop_oneof![4 => 1i64..=5, 1 => 6i64..=60]), 1..=3).prop_map(|lines| {
        lines
            .into_iter()
            .zip(LINE_IDS)
            .map(|((sku, quantity), id)| pb::OrderLine {
                line_id: id.to_owned(),
                sku,
                quantity,
                group: String::new(),
            })
            .collect::<Vec<_>>()
    });
    (
        order_id(),
        select(demo().segments.clone()),
        lines,
        (36.0..43.5f64, -9.3..3.3f64),
        any::<bool>(),
        select(vec!["", "2026-03-03", "2026-03-10", "2026-12-01"]),
    )
        .prop_map(
            |(order_id, segment, lines, (lat, lon), ship_complete, deliver_by)| pb::Order {
                order_id,
                segment,
                destination: Some(pb::Destination {
                    location: Some(pb::GeoPoint { lat, lon }),
                    country: "ES".into(),
                }),
                lines,
                delivery_mode: pb::DeliveryMode::Ship as i32,
                pickup_node_id: String::new(),
                ship_complete,
                deliver_by: deliver_by.into(),
            },
        )
}

/// A reroute as a well-behaved node sends it: of every unit it has of the order, or of some
/// units of one or two of the order's lines.
fn plain_reroute() -> BoxedStrategy<pb::RerouteRequest> {
    (
        select(ORDER_IDS.to_vec()),
        select(demo().nodes.clone()),
        subsequence(LINE_IDS.to_vec(), 0..=2),
        vec(1i64..=5, 2),
        1i32..=5,
        select(REROUTE_IDS.to_vec()),
    )
        .prop_map(
            |(order_id, node_id, line_ids, units, reason, reroute_id)| pb::RerouteRequest {
                order_id: order_id.to_owned(),
                node_id,
                lines: line_ids
                    .into_iter()
                    .zip(units)
                    .map(|(line_id, quantity)| pb::RerouteLine {
                        line_id: line_id.to_owned(),
                        quantity,
                    })
                    .collect(),
                reason,
                reroute_id: reroute_id.to_owned(),
            },
        )
        .boxed()
}

/// Requests as a well-behaved client sends them: the material of the byte-level mutations.
pub fn valid_call() -> BoxedStrategy<Call> {
    let order_id = || select(ORDER_IDS.to_vec()).prop_map(str::to_owned);
    let sku = || select(SKUS.to_vec()).prop_map(str::to_owned);
    let node = || select(demo().nodes.clone());
    let order = plain_order();
    let update = (node(), sku(), 1..=2i32, 0i64..=100, 1u64..=40).prop_map(
        |(node_id, sku, kind, quantity, sequence)| pb::StockUpdate {
            node_id,
            sku,
            kind,
            quantity,
            sequence,
            ..Default::default()
        },
    );
    prop_oneof![
        (order.clone(), 0..=3).prop_map(|(o, strategy)| Call::Quote(pb::QuoteRequest {
            order: Some(o),
            strategy
        })),
        (order, 0u32..=900).prop_map(|(o, hold_ttl_seconds)| Call::Reserve(pb::ReserveRequest {
            order: Some(o),
            hold_ttl_seconds,
            strategy: 0,
        })),
        order_id().prop_map(|order_id| Call::Commit(pb::CommitRequest { order_id })),
        (
            order_id(),
            vec(select(LINE_IDS.to_vec()).prop_map(str::to_owned), 0..=2)
        )
            .prop_map(|(order_id, line_ids)| Call::Release(pb::ReleaseRequest {
                order_id,
                line_ids
            })),
        plain_reroute().prop_map(Call::Reroute),
        order_id()
            .prop_map(|order_id| Call::GetReservation(pb::GetReservationRequest { order_id })),
        vec(update.clone(), 1..=4)
            .prop_map(|updates| Call::SetStock(pb::SetStockRequest { updates })),
        vec(update, 1..=4).prop_map(Call::PushStock),
        (
            vec(sku(), 1..=3),
            select(vec!["", "standard", "vip", "marketplace"])
        )
            .prop_map(|(skus, segment)| Call::GetAvailability(
                pb::GetAvailabilityRequest {
                    skus,
                    segment: segment.to_owned(),
                }
            )),
        (0..=4).prop_map(|kind| Call::ListNodes(pb::ListNodesRequest { kind })),
    ]
    .boxed()
}
