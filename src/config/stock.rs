//! The seed stock file (`stock.csv`): starting stock levels for the in-memory store, checked
//! against the network.

use std::collections::HashSet;

use serde::Deserialize;

use super::{ConfigError, one_line};
use crate::domain::Network;

/// One row of `stock.csv`: a starting stock level for the in-memory store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StockSeed {
    pub sku: String,
    pub node: String,
    pub on_hand: u64,
    pub safety_stock: u64,
}

/// Parses `stock.csv` (lines starting with `#` are comments) against the network.
pub fn parse_stock(
    source: &str,
    text: &str,
    network: &Network,
) -> Result<Vec<StockSeed>, ConfigError> {
    let mut reader = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for (i, row) in reader.deserialize::<StockSeed>().enumerate() {
        let at = |field: &str| format!("row {} {field}", i + 1).trim_end().to_owned();
        let row = row.map_err(|e| ConfigError::new(source, at(""), one_line(&e.to_string())))?;
        if row.sku.is_empty() {
            return Err(ConfigError::new(source, at("sku"), "must not be empty"));
        }
        if !network.contains(&row.node) {
            return Err(ConfigError::new(
                source,
                at("node"),
                format!("{:?} is not in the network", row.node),
            ));
        }
        if !seen.insert((row.sku.clone(), row.node.clone())) {
            return Err(ConfigError::new(
                source,
                at("sku"),
                format!("{} at {} appears twice", row.sku, row.node),
            ));
        }
        let limit = crate::store::MAX_STOCK_UNITS;
        for (field, value) in [("on_hand", row.on_hand), ("safety_stock", row.safety_stock)] {
            if value > limit {
                return Err(ConfigError::new(
                    source,
                    at(field),
                    format!("{value} is above the limit of {limit} units"),
                ));
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::network::{parse_network, tests::NODE};

    #[test]
    fn stock_rows_naming_unknown_nodes_or_beyond_the_limit_are_refused() {
        let network = parse_network("net.toml", NODE).unwrap();
        let e = parse_stock(
            "stock.csv",
            "sku,node,on_hand,safety_stock\nA,wh-a,3,0\nB,wh-z,1,0\n",
            &network,
        )
        .unwrap_err();
        assert_eq!(e.field, "row 2 node");
        let e = parse_stock(
            "stock.csv",
            "sku,node,on_hand,safety_stock\nA,wh-a,-3,0\n",
            &network,
        )
        .unwrap_err();
        assert_eq!(e.field, "row 1");
        for (row, field) in [
            ("A,wh-a,1000000000001,0", "row 1 on_hand"),
            ("A,wh-a,5,18446744073709551615", "row 1 safety_stock"),
        ] {
            let text = format!("sku,node,on_hand,safety_stock\n{row}\n");
            let e = parse_stock("stock.csv", &text, &network).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.problem.contains("above the limit"), "{e}");
        }
        parse_stock(
            "stock.csv",
            "sku,node,on_hand,safety_stock\nA,wh-a,1000000000000,1000000000000\n",
            &network,
        )
        .unwrap();
    }
}
