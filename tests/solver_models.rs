//! The reference instances of `solver-models/instances/`: each LP file is exactly the model
//! the service builds for its instance, and the service's own solve path reaches the recorded
//! optimal objective.
//!
//! A binary without HiGHS (the `highs` feature) solves only the instances that the configured
//! solver would not hand to HiGHS; `./scripts/test` builds it in and solves them all.

use std::path::PathBuf;
use std::time::Duration;

use dom_router::config::{Config, ConfigSource};
use dom_router::domain::SolveStatus;
use dom_router::sourcing::Backend;
use dom_router::sourcing::Instance;
use dom_router::sourcing::optimal::{AUTO_HIGHS_ABOVE, HIGHS_BUILT, solve};

fn instances_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("solver-models/instances")
}

#[test]
fn every_reference_instance_solves_to_its_recorded_optimum() {
    let settings = Config::load(ConfigSource::Embedded, std::iter::empty())
        .unwrap()
        .settings
        .sourcing;
    let optima = std::fs::read_to_string(instances_dir().join("optima.csv")).unwrap();
    let mut checked = 0;
    let mut without_highs = Vec::new();
    for row in optima.lines().skip(1) {
        let fields: Vec<&str> = row.split(',').collect();
        let (name, objective): (&str, f64) = (fields[0], fields[3].parse().unwrap());
        let json = std::fs::read_to_string(instances_dir().join(format!("{name}.json"))).unwrap();
        let inst: Instance = serde_json::from_str(&json).unwrap();
        let lp = std::fs::read_to_string(instances_dir().join(format!("{name}.lp"))).unwrap();
        assert_eq!(
            inst.to_lp(name),
            lp,
            "{name}.lp is not the model of {name}.json"
        );
        let pairs = inst.cands.len() * inst.lines.len();
        let needs_highs = match settings.solver {
            Backend::Microlp => false,
            Backend::Highs => true,
            Backend::Auto => pairs > AUTO_HIGHS_ABOVE,
        };
        if needs_highs && !HIGHS_BUILT {
            without_highs.push(name.to_owned());
            continue;
        }
        // the configured solver, with no budget that a slow machine could run out of: the
        // result must not depend on speed (latency is measured in benches/)
        let solved = solve(&inst, settings.solver, Duration::from_secs(3600));
        assert!(
            matches!(
                solved.status,
                SolveStatus::Optimal | SolveStatus::ExactFastPath
            ),
            "{name}: {:?}",
            solved.status
        );
        inst.check(&solved.units).unwrap();
        let cost = inst.cost(&solved.units);
        assert!(
            (cost - objective).abs() < 1e-4,
            "{name}: the service found {cost}, the recorded optimum is {objective}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} reference instances");
    if !without_highs.is_empty() {
        eprintln!(
            "not solved (the configured solver needs HiGHS, which this build lacks): {}",
            without_highs.join(", ")
        );
    }
}
