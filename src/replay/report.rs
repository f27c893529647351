//! What `dom-router replay` prints: the metrics of one replay, or of two side by side with
//! their differences and the orders decided differently, as an aligned table for people and as
//! one JSON object for scripts.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::domain::{RefusalKind, SolveStatus};

use super::compare::{Change, changes};
use super::run::{Decision, Outcome, Run, refusal_reason};
use super::totals::{Summary, Totals};

/// A replay and the config it was made against, as named to the user.
#[derive(Debug, Clone, Copy)]
pub struct Labelled<'a> {
    pub config: &'a str,
    pub run: &'a Run,
}

/// What `dom-router replay` prints: one replay, or two side by side with their differences.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub orders_file: &'a str,
    pub base: Labelled<'a>,
    pub against: Option<Labelled<'a>>,
    /// Changed orders listed in the text (the JSON lists them all).
    pub examples: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Count,
    Money,
    Ratio,
    /// A share from 0 to 1, shown as a percentage; its change in percentage points.
    Share,
}

struct Metric {
    key: &'static str,
    label: &'static str,
    unit: Unit,
    of: fn(&Totals) -> f64,
}

const METRICS: [Metric; 17] = [
    Metric {
        key: "orders",
        label: "orders",
        unit: Unit::Count,
        of: |t| t.orders as f64,
    },
    Metric {
        key: "units",
        label: "units",
        unit: Unit::Count,
        of: |t| t.units as f64,
    },
    Metric {
        key: "planned_orders",
        label: "planned orders",
        unit: Unit::Count,
        of: |t| t.planned as f64,
    },
    Metric {
        key: "cost_to_serve",
        label: "cost to serve",
        unit: Unit::Money,
        of: |t| t.cost,
    },
    Metric {
        key: "fulfilment_cost",
        label: "  fulfilment",
        unit: Unit::Money,
        of: |t| t.fulfilment_cost,
    },
    Metric {
        key: "unfilled_penalty",
        label: "  unfilled units' penalty",
        unit: Unit::Money,
        of: |t| t.unfilled_penalty,
    },
    Metric {
        key: "refusal_penalty",
        label: "  refused orders' penalty",
        unit: Unit::Money,
        of: |t| t.refusal_penalty,
    },
    Metric {
        key: "cost_per_order",
        label: "per order",
        unit: Unit::Money,
        of: Totals::cost_per_order,
    },
    Metric {
        key: "shipments_per_order",
        label: "shipments per order",
        unit: Unit::Ratio,
        of: Totals::shipments_per_order,
    },
    Metric {
        key: "split_rate",
        label: "split rate",
        unit: Unit::Share,
        of: Totals::split_rate,
    },
    Metric {
        key: "unfilled_units",
        label: "unfilled units",
        unit: Unit::Count,
        of: |t| t.unfilled_units as f64,
    },
    Metric {
        key: "refused_orders",
        label: "refused orders",
        unit: Unit::Count,
        of: |t| t.refused as f64,
    },
    Metric {
        key: "units_waited",
        label: "units waited for supply",
        unit: Unit::Count,
        of: |t| t.waited_units as f64,
    },
    Metric {
        key: "units_filled",
        label: "  filled",
        unit: Unit::Count,
        of: |t| t.filled_units as f64,
    },
    Metric {
        key: "units_cancelled_waiting",
        label: "  cancelled after waiting",
        unit: Unit::Count,
        of: |t| t.cancelled_waiting_units as f64,
    },
    Metric {
        key: "units_still_waiting",
        label: "  still waiting",
        unit: Unit::Count,
        of: |t| t.still_waiting_units as f64,
    },
    Metric {
        key: "average_wait_hours",
        label: "  average wait of filled (h)",
        unit: Unit::Ratio,
        of: Totals::average_wait_hours,
    },
];

/// One line of the table: a metric of one scope (all orders, or a segment).
struct Row {
    label: String,
    unit: Unit,
    base: f64,
    against: Option<f64>,
}

impl Unit {
    fn value(self, v: f64) -> String {
        match self {
            Unit::Count => format!("{v:.0}"),
            Unit::Money => format!("{v:.2}"),
            Unit::Ratio => format!("{v:.3}"),
            Unit::Share => format!("{:.1}%", v * 100.0),
        }
    }

    fn change(self, d: f64) -> String {
        match self {
            Unit::Count => format!("{d:+.0}"),
            Unit::Money => format!("{d:+.2}"),
            Unit::Ratio => format!("{d:+.3}"),
            Unit::Share => format!("{:+.1} pt", d * 100.0),
        }
    }

    /// As a JSON number: counts whole, money in cents, ratios to six places.
    fn json(self, v: f64) -> Value {
        match self {
            Unit::Count => json!(v as i64),
            Unit::Money => json!(round_to(v, 2)),
            Unit::Ratio | Unit::Share => json!(round_to(v, 6)),
        }
    }
}

fn round_to(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// The change relative to `base`, in percent; `None` where base is zero and the value moved.
fn percent(base: f64, against: f64) -> Option<f64> {
    if base == against {
        Some(0.0)
    } else if base == 0.0 {
        None
    } else {
        Some(100.0 * (against - base) / base.abs())
    }
}

/// The figures of what became of units that waited: shown only where some did.
const BACKORDER_METRICS: [&str; 5] = [
    "units_waited",
    "units_filled",
    "units_cancelled_waiting",
    "units_still_waiting",
    "average_wait_hours",
];

fn rows_of(base: &Totals, against: Option<&Totals>, indent: &str, reasons: bool) -> Vec<Row> {
    let waited = base.waited_units > 0 || against.is_some_and(|t| t.waited_units > 0);
    let mut rows = Vec::new();
    for m in METRICS
        .iter()
        .filter(|m| waited || !BACKORDER_METRICS.contains(&m.key))
    {
        rows.push(Row {
            label: format!("{indent}{}", m.label),
            unit: m.unit,
            base: (m.of)(base),
            against: against.map(m.of),
        });
        if reasons && m.key == "refused_orders" {
            for (reason, kind) in reasons_of(base, against) {
                let count = |t: &Totals| refused(t, kind) as f64;
                rows.push(Row {
                    label: format!("{indent}  {reason}"),
                    unit: Unit::Count,
                    base: count(base),
                    against: against.map(count),
                });
            }
        }
    }
    rows
}

/// The kinds of refusal of either side, with the reason each is reported as, sorted by it.
fn reasons_of(base: &Totals, against: Option<&Totals>) -> BTreeSet<(&'static str, RefusalKind)> {
    base.refused_by_kind
        .keys()
        .chain(against.into_iter().flat_map(|t| t.refused_by_kind.keys()))
        .map(|&kind| (refusal_reason(kind), kind))
        .collect()
}

/// Orders refused for this kind of reason.
fn refused(t: &Totals, kind: RefusalKind) -> u64 {
    t.refused_by_kind.get(&kind).copied().unwrap_or(0)
}

/// Segments of either side, sorted.
fn segments_of<'a>(base: &'a Summary, against: Option<&'a Summary>) -> BTreeSet<&'a str> {
    base.segments
        .keys()
        .chain(against.into_iter().flat_map(|s| s.segments.keys()))
        .map(String::as_str)
        .collect()
}

/// A line of the printed table.
enum Line {
    Blank,
    Heading(String),
    Row(Row),
}

/// The table as text, metrics aligned in columns.
fn table(lines: &[Line], two: bool) -> String {
    let width = lines
        .iter()
        .filter_map(|l| match l {
            Line::Row(r) => Some(r.label.chars().count()),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    if two {
        out.push_str(&format!(
            "{:width$}  {:>12}  {:>12}  {:>12}  {:>8}\n",
            "", "base", "against", "change", "%"
        ));
    }
    for line in lines {
        match line {
            Line::Blank => out.push('\n'),
            Line::Heading(h) => {
                out.push_str(h);
                out.push('\n');
            }
            Line::Row(r) => match r.against {
                None => out.push_str(&format!(
                    "{:width$}  {:>12}\n",
                    r.label,
                    r.unit.value(r.base)
                )),
                Some(a) => {
                    let (change, pct) = if a == r.base {
                        ("0".to_owned(), "0.0%".to_owned())
                    } else {
                        let pct = percent(r.base, a).map_or("-".into(), |p| format!("{p:+.1}%"));
                        (r.unit.change(a - r.base), pct)
                    };
                    out.push_str(&format!(
                        "{:width$}  {:>12}  {:>12}  {:>12}  {:>8}\n",
                        r.label,
                        r.unit.value(r.base),
                        r.unit.value(a),
                        change,
                        pct,
                    ));
                }
            },
        }
    }
    out
}

impl Report<'_> {
    fn changes(&self) -> Option<Vec<Change>> {
        self.against.map(|a| changes(self.base.run, a.run))
    }

    /// For people: the metrics over all orders, per refusal reason and per segment; with a
    /// second config, both side by side with the changes, and the orders decided differently.
    pub fn text(&self) -> String {
        let base = &self.base.run.summary;
        let against = self.against.map(|a| &a.run.summary);
        let events = match self.base.run.events {
            0 => String::new(),
            1 => " and 1 event".to_owned(),
            n => format!(" and {n} events"),
        };
        let mut out = format!(
            "replay of {} orders{events} from {}\n",
            base.all.orders, self.orders_file
        );
        let side = |l: Labelled| format!("{}, strategy {}", l.config, l.run.strategy);
        match self.against {
            None => out.push_str(&format!("config: {}\n\n", side(self.base))),
            Some(a) => out.push_str(&format!(
                "base:    {}\nagainst: {}\nboth from the same starting stock\n\n",
                side(self.base),
                side(a)
            )),
        }
        let mut lines: Vec<Line> = rows_of(&base.all, against.map(|s| &s.all), "", true)
            .into_iter()
            .map(Line::Row)
            .collect();
        let empty = Totals::default();
        for name in segments_of(base, against) {
            lines.push(Line::Blank);
            lines.push(Line::Heading(format!("segment {name}")));
            let b = base.segments.get(name).unwrap_or(&empty);
            let a = against.map(|s| s.segments.get(name).unwrap_or(&empty));
            lines.extend(rows_of(b, a, "  ", false).into_iter().map(Line::Row));
        }
        out.push_str(&table(&lines, self.against.is_some()));
        if let Some(changes) = self.changes() {
            out.push_str(&format!(
                "\ndecisions changed: {} of {} orders\n",
                changes.len(),
                base.all.orders
            ));
            for c in changes.iter().take(self.examples) {
                out.push_str(&format!(
                    "  {} ({}, line {}): {} -> {}, cost {:+.2}\n",
                    c.order_id, c.segment, c.line, c.before, c.after, c.cost_delta
                ));
            }
            if changes.len() > self.examples {
                out.push_str(&format!(
                    "  ... and {} more (--json lists them all)\n",
                    changes.len() - self.examples
                ));
            }
        }
        out
    }

    /// For scripts: the same as one JSON object.
    pub fn json(&self) -> Value {
        let base = &self.base.run.summary;
        let against = self.against.map(|a| &a.run.summary);
        let mut out = json!({
            "orders_file": self.orders_file,
            "events": self.base.run.events,
            "base": summary_json(self.base),
        });
        if let (Some(a), Some(against)) = (self.against, against) {
            out["against"] = summary_json(a);
            let mut difference = difference_json(&base.all, &against.all, true);
            let empty = Totals::default();
            let segments: serde_json::Map<String, Value> = segments_of(base, Some(against))
                .into_iter()
                .map(|name| {
                    let b = base.segments.get(name).unwrap_or(&empty);
                    let a = against.segments.get(name).unwrap_or(&empty);
                    (name.to_owned(), difference_json(b, a, false))
                })
                .collect();
            difference["segments"] = Value::Object(segments);
            out["difference"] = difference;
            let changes = self.changes().unwrap_or_default();
            out["changed_orders"] = json!(changes.len());
            out["changes"] = changes
                .iter()
                .map(|c| {
                    json!({
                        "line": c.line,
                        "order_id": c.order_id,
                        "segment": c.segment,
                        "before": c.before,
                        "after": c.after,
                        "cost_delta": round_to(c.cost_delta, 2),
                    })
                })
                .collect();
        }
        out
    }
}

fn totals_json(t: &Totals) -> serde_json::Map<String, Value> {
    let mut out: serde_json::Map<String, Value> = METRICS
        .iter()
        .map(|m| (m.key.to_owned(), m.unit.json((m.of)(t))))
        .collect();
    let by_reason: serde_json::Map<String, Value> = t
        .refused_by_kind
        .iter()
        .map(|(&kind, &count)| (refusal_reason(kind).to_owned(), json!(count)))
        .collect();
    out.insert("refused_by_reason".into(), Value::Object(by_reason));
    out.insert("shipments_by_node".into(), json!(t.shipments_by_node));
    out
}

/// One order's decision, for auditing a day order by order: the plan (each parcel's node,
/// lines and cost), its cost to serve broken down, or the refusal and what it is charged.
fn decision_json(d: &Decision) -> Value {
    let mut out = json!({
        "line": d.line,
        "order_id": d.order_id,
        "segment": d.segment,
        "units": d.units,
        "cost_to_serve": round_to(d.cost(), 2),
    });
    match &d.outcome {
        Outcome::Planned(plan) => {
            out["outcome"] = json!("planned");
            out["status"] = json!(match plan.status {
                SolveStatus::Optimal => "optimal",
                SolveStatus::Feasible => "feasible",
                SolveStatus::ExactFastPath => "exact_fast_path",
                SolveStatus::Heuristic => "heuristic",
            });
            out["cost"] = json!(plan.cost);
            out["shipments"] = plan
                .shipments
                .iter()
                .map(|s| {
                    json!({
                        "node_id": s.node_id,
                        "cost": s.cost,
                        "distance_km": s.distance_km,
                        "estimated_delivery": s.estimated_delivery.to_string(),
                        "lines": s.lines.iter().map(|l| json!({
                            "line_id": l.line_id,
                            "sku": l.sku,
                            "quantity": l.quantity,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            out["unfilled"] = plan
                .unfilled
                .iter()
                .map(|u| json!({"line_id": u.line_id, "sku": u.sku, "quantity": u.quantity}))
                .collect();
        }
        Outcome::Refused(refusal) => {
            out["outcome"] = json!("refused");
            out["reason"] = json!(refusal_reason(refusal.kind));
            out["refusal"] = json!(refusal.to_string());
            out["refusal_penalty"] = json!(round_to(d.refusal_penalty(), 2));
        }
    }
    out
}

fn summary_json(l: Labelled) -> Value {
    let s = &l.run.summary;
    let mut out = totals_json(&s.all);
    out.insert("config".into(), json!(l.config));
    out.insert("strategy".into(), json!(l.run.strategy.as_str()));
    let segments: serde_json::Map<String, Value> = s
        .segments
        .iter()
        .map(|(name, t)| (name.clone(), Value::Object(totals_json(t))))
        .collect();
    out.insert("segments".into(), Value::Object(segments));
    let decisions: Vec<Value> = l.run.decisions.iter().map(decision_json).collect();
    out.insert("decisions".into(), Value::Array(decisions));
    Value::Object(out)
}

fn change_json(unit: Unit, base: f64, against: f64) -> Value {
    json!({
        "absolute": unit.json(against - base),
        "percent": percent(base, against).map(|p| round_to(p, 2)),
    })
}

fn difference_json(base: &Totals, against: &Totals, reasons: bool) -> Value {
    let mut out: serde_json::Map<String, Value> = METRICS
        .iter()
        .map(|m| {
            (
                m.key.to_owned(),
                change_json(m.unit, (m.of)(base), (m.of)(against)),
            )
        })
        .collect();
    if reasons {
        let by_reason: serde_json::Map<String, Value> = reasons_of(base, Some(against))
            .into_iter()
            .map(|(reason, kind)| {
                let count = |t: &Totals| refused(t, kind) as f64;
                (
                    reason.to_owned(),
                    change_json(Unit::Count, count(base), count(against)),
                )
            })
            .collect();
        out.insert("refused_by_reason".into(), Value::Object(by_reason));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Network;
    use crate::replay::fixtures::{order, replay, tiny};

    #[tokio::test]
    async fn a_disabled_node_moves_the_orders_it_served() {
        let base = tiny(&[("wh-a", 3), ("wh-b", 5)], 1000);
        let mut changed = base.clone();
        let nodes = changed
            .network
            .nodes()
            .iter()
            .cloned()
            .map(|mut n| {
                n.enabled = n.id != "wh-a";
                n
            })
            .collect();
        changed.network = Network::new("EUR".into(), nodes);
        let orders = vec![order("o1", "strict", 2), order("o2", "relaxed", 1)];
        let before = replay(&base, orders.clone()).await;
        let after = replay(&changed, orders.clone()).await;
        let again = replay(&base, orders).await;
        assert!(changes(&before, &again).is_empty());
        let moved = changes(&before, &after);
        assert_eq!(moved.len(), 2, "{moved:?}");
        assert_eq!(moved[0].order_id, "o1");
        assert_eq!(moved[0].before, "wh-a 2");
        assert_eq!(moved[0].after, "wh-b 2");
        // Barcelona is farther from Madrid than wh-a
        assert!(moved[0].cost_delta > 0.0, "{moved:?}");

        let report = Report {
            orders_file: "o.jsonl",
            base: Labelled {
                config: "base",
                run: &before,
            },
            against: Some(Labelled {
                config: "changed",
                run: &after,
            }),
            examples: 1,
        };
        let text = report.text();
        assert!(text.contains("decisions changed: 2 of 2 orders"), "{text}");
        assert!(
            text.contains("o1 (strict, line 1): wh-a 2 -> wh-b 2, cost +"),
            "{text}"
        );
        assert!(text.contains("... and 1 more"), "{text}");
        assert!(text.contains("segment relaxed"), "{text}");
        let json = report.json();
        assert_eq!(json["changed_orders"], 2);
        let cost_before = before.summary.all.cost;
        let cost_after = after.summary.all.cost;
        assert_eq!(
            json["difference"]["cost_to_serve"]["absolute"],
            json!(round_to(cost_after - cost_before, 2))
        );
        assert_eq!(json["difference"]["orders"]["absolute"], 0);
        assert_eq!(json["base"]["shipments_by_node"]["wh-a"], 2);
        assert!(json["against"]["shipments_by_node"].get("wh-a").is_none());
        assert_eq!(
            json["difference"]["segments"]["strict"]["orders"]["percent"],
            0.0
        );
    }

    #[test]
    fn percentages_of_nothing_are_not_invented() {
        assert_eq!(percent(0.0, 0.0), Some(0.0));
        assert_eq!(percent(0.0, 3.0), None);
        assert_eq!(percent(4.0, 3.0), Some(-25.0));
        assert_eq!(Unit::Share.change(-0.087), "-8.7 pt");
    }
}
