//! Comparing two replays of the same orders: the orders decided differently, and how.

use super::run::Run;

/// An order decided differently by two replays: other nodes or quantities, or refused by one.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub line: usize,
    pub order_id: String,
    pub segment: String,
    pub before: String,
    pub after: String,
    /// The change in the order's cost to serve (a refused order's units at the segment's
    /// unfilled penalty).
    pub cost_delta: f64,
}

/// The orders `against` decides differently from `base`, in file order. Both must be replays
/// of the same orders.
pub fn changes(base: &Run, against: &Run) -> Vec<Change> {
    base.decisions
        .iter()
        .zip(&against.decisions)
        .filter(|(b, a)| b.allocation() != a.allocation())
        .map(|(b, a)| {
            debug_assert_eq!(b.order_id, a.order_id);
            let (mut before, mut after) = (b.describe(), a.describe());
            if before == after {
                (before, after) = (b.describe_lines(), a.describe_lines());
            }
            Change {
                line: b.line,
                order_id: b.order_id.clone(),
                segment: b.segment.clone(),
                before,
                after,
                cost_delta: a.cost() - b.cost(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StockSeed;
    use crate::domain::OrderLine;
    use crate::replay::Outcome;
    use crate::replay::fixtures::{order, replay, tiny};

    #[tokio::test]
    async fn a_change_of_lines_alone_is_shown_line_by_line() {
        let mut config = tiny(&[("wh-a", 5)], 1000);
        config.stock.push(StockSeed {
            sku: "Y".into(),
            node: "wh-a".into(),
            on_hand: 5,
            safety_stock: 0,
        });
        let mut two = order("o1", "strict", 1);
        two.lines.push(OrderLine {
            line_id: "2".into(),
            sku: "Y".into(),
            quantity: 1,
            group: None,
        });
        let before = replay(&config, vec![two]).await;
        let mut after = before.clone();
        let Outcome::Planned(plan) = &mut after.decisions[0].outcome else {
            panic!("{after:?}")
        };
        plan.shipments[0].lines.retain(|l| l.line_id == "1");
        plan.shipments[0].lines[0].quantity = 2;
        let c = changes(&before, &after);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].before, "wh-a (line 1 x1, line 2 x1)");
        assert_eq!(c[0].after, "wh-a (line 1 x2)");
    }
}
