//! Whether this binary can run the configured solver. HiGHS is a cargo feature (`highs`): a
//! binary built without it refuses, at start, a setting that would need it, rather than plan
//! with another solver than the config says.

use super::{ConfigError, Settings};
use crate::domain::Network;
use crate::sourcing::Backend;
use crate::sourcing::optimal::AUTO_HIGHS_ABOVE;

const FIELD: &str = "sourcing.solver";

/// Checks `sourcing.solver` against the solvers the binary has; `highs_built` is
/// [`crate::sourcing::optimal::HIGHS_BUILT`] but for tests. Without HiGHS, `highs` is refused,
/// and so is `auto` where an order of `server.max_lines_per_order` lines could have more than
/// [`AUTO_HIGHS_ABOVE`] candidate-line pairs, the models `auto` hands to HiGHS.
pub fn check_solver(
    settings: &Settings,
    network: &Network,
    highs_built: bool,
    source: &str,
) -> Result<(), ConfigError> {
    if highs_built {
        return Ok(());
    }
    match settings.sourcing.solver {
        Backend::Microlp => Ok(()),
        Backend::Highs => Err(ConfigError::new(
            source,
            FIELD,
            "\"highs\" needs HiGHS, and this binary was built without the `highs` feature; \
             build with --features highs (cmake and libclang needed) or use \"microlp\"",
        )),
        Backend::Auto => {
            // every node is a candidate at most once per order; disabled ones count too, since
            // a rules reload may enable them without a restart
            let nodes = network.len();
            let max_lines = settings.server.max_lines_per_order;
            if nodes.saturating_mul(max_lines) <= AUTO_HIGHS_ABOVE {
                return Ok(());
            }
            let fewest = AUTO_HIGHS_ABOVE / nodes + 1;
            Err(ConfigError::new(
                source,
                FIELD,
                format!(
                    "\"auto\" hands models of more than {AUTO_HIGHS_ABOVE} candidate-line pairs \
                     to HiGHS, and this binary was built without the `highs` feature: on the \
                     network's {nodes} nodes, orders of {fewest} lines up to the largest, \
                     {max_lines} lines (server.max_lines_per_order), would need it; use \
                     \"microlp\", set server.max_lines_per_order to {} or less, or build with \
                     --features highs",
                    fewest - 1
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, embedded, load_settings, parse_network};

    fn settings(solver: &str, max_lines: usize) -> Settings {
        let env = [
            ("DOM_ROUTER__SOURCING__SOLVER", solver.to_owned()),
            (
                "DOM_ROUTER__SERVER__MAX_LINES_PER_ORDER",
                max_lines.to_string(),
            ),
        ];
        let env = env.into_iter().map(|(k, v)| (k.to_owned(), v));
        load_settings(&ConfigSource::Embedded, env).unwrap()
    }

    /// The demo network: 31 nodes, so `auto` may pass 15,000 pairs from 484 lines on.
    fn demo() -> Network {
        parse_network("network.toml", embedded::NETWORK).unwrap()
    }

    fn check(solver: &str, max_lines: usize, highs_built: bool) -> Result<(), ConfigError> {
        check_solver(
            &settings(solver, max_lines),
            &demo(),
            highs_built,
            "server settings",
        )
    }

    #[test]
    fn with_highs_built_in_every_solver_is_fine() {
        assert_eq!(demo().len(), 31);
        for solver in ["microlp", "highs", "auto"] {
            check(solver, 10_000, true).unwrap();
        }
    }

    #[test]
    fn without_highs_the_highs_solver_is_refused_naming_the_feature() {
        let e = check("highs", 10, false).unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.field.as_str()),
            ("server settings", "sourcing.solver")
        );
        assert!(
            e.problem.contains("built without the `highs` feature"),
            "{e}"
        );
        assert!(e.problem.contains("--features highs"), "{e}");
        assert!(e.problem.contains("\"microlp\""), "{e}");
    }

    #[test]
    fn without_highs_microlp_is_fine_at_any_size() {
        check("microlp", 10_000, false).unwrap();
    }

    #[test]
    fn without_highs_auto_is_fine_while_no_order_can_pass_the_threshold() {
        // the shipped settings: 31 nodes x 200 lines
        check("auto", 200, false).unwrap();
        // 31 x 483 = 14,973 pairs at most
        check("auto", 483, false).unwrap();
        let e = check("auto", 484, false).unwrap_err();
        assert_eq!(e.field, "sourcing.solver");
        let e = check("auto", 500, false).unwrap_err();
        assert_eq!(e.field, "sourcing.solver");
        for part in [
            "built without the `highs` feature",
            "31 nodes",
            "orders of 484 lines up to the largest, 500 lines (server.max_lines_per_order)",
            "\"microlp\"",
            "server.max_lines_per_order to 483 or less",
            "--features highs",
        ] {
            assert!(e.problem.contains(part), "{part:?} not in {e}");
        }
    }
}
