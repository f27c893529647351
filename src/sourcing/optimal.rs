//! The `optimal` strategy: the plan of least cost to serve, proven optimal, on the model of
//! `solver-models/sourcing.md`.
//!
//! In order: two cases solved exactly at once (one node that ships the whole order more
//! cheaply than any other plan could cost, and single-line orders, enumerated), then the exact
//! search over node sets (`search.rs`) for every order without kits, and for orders with kits
//! mixed-integer programming (good_lp), after pruning candidates dominated by at least
//! `max_shipments` others (any plan using one can swap it for an unused dominator at no extra
//! cost). The search and the solver share a time budget; when it runs out, the best feasible
//! plan found is returned and marked as such.
//!
//! The file passes 600 lines only by its unit tests; the code before them reads in one sitting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[cfg(feature = "highs")]
use good_lp::highs;
use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution, SolutionStatus, SolverModel, Variable,
    WithTimeLimit, microlp, variable,
};
use serde::Deserialize;

use super::instance::{Instance, Units, Var};
use crate::domain::SolveStatus;

/// The MIP solver behind good_lp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Pure Rust; fastest on the small models of one order.
    Microlp,
    /// HiGHS, single-threaded with heuristics and symmetry detection off; stronger on large
    /// models. Only in a binary built with the `highs` feature ([`HIGHS_BUILT`]): config
    /// loading refuses it elsewhere.
    Highs,
    /// microlp for models up to [`AUTO_HIGHS_ABOVE`] candidate-line pairs, HiGHS beyond. In a
    /// binary without HiGHS, microlp throughout: config loading refuses `auto` where the
    /// network and the line limit allow a model beyond the threshold.
    Auto,
}

/// Whether HiGHS is built into this binary (the `highs` cargo feature). It is compiled from
/// C++ source, which dominates a fresh build, and the demo never needs it.
pub const HIGHS_BUILT: bool = cfg!(feature = "highs");

/// Candidate-line pairs above which `auto` picks HiGHS. On the reference instances microlp
/// solved every model up to 200 candidates x 30 lines and 860 x 10 faster than HiGHS, and
/// only HiGHS proved 998 x 30 (`solver-models/instances/optima.csv`).
pub const AUTO_HIGHS_ABOVE: usize = 15_000;

/// The least time the solver is given, even when pruning and building used the whole budget.
const MIN_SOLVE_SECONDS: f64 = 0.001;

/// The subsets a single-line order is enumerated over at most before the solver takes it.
const ENUMERATION_LIMIT: usize = 4096;

/// What the optimiser decided, in the instance's own indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct Solved {
    pub units: Units,
    pub status: SolveStatus,
    /// Pruned candidates with the candidates that dominate them.
    pub dominated: Vec<(usize, Vec<usize>)>,
}

/// The least-cost plan for an instance, within `budget`: the fast paths, then the search
/// over node sets, and where the search does not apply (kits, a node whose capacity binds),
/// pruning and the MIP; pruning and building the model count against the budget, and the
/// solver gets what is left.
pub fn solve(inst: &Instance, backend: Backend, budget: Duration) -> Solved {
    let deadline = Instant::now() + budget;
    let exact = |units: Units, status| Solved {
        dominated: dominated_by_plan(inst, &units),
        units,
        status,
    };
    if inst.cands.is_empty() {
        return exact(Vec::new(), SolveStatus::ExactFastPath);
    }
    if let Some(units) = single_node(inst).or_else(|| single_line(inst)) {
        return exact(units, SolveStatus::ExactFastPath);
    }
    if let Some((units, proven)) = super::search::search(inst, deadline, || greedy(inst)) {
        let status = if proven {
            SolveStatus::Optimal
        } else {
            SolveStatus::Feasible
        };
        return exact(units, status);
    }
    solve_by_mip(
        inst,
        backend,
        deadline.saturating_duration_since(Instant::now()),
    )
}

/// The least-cost plan by pruning and the MIP alone, as [`solve`] does for orders the search
/// does not take: for checking the search against the configured MIP solver.
pub fn solve_by_mip(inst: &Instance, backend: Backend, budget: Duration) -> Solved {
    let deadline = Instant::now() + budget;
    let (kept, dominated) = prune(inst);
    let sub = Instance {
        cands: kept.iter().map(|&c| inst.cands[c].clone()).collect(),
        ..inst.clone()
    };
    let (units, status) = solve_pruned(&sub, backend, deadline);
    Solved {
        units: units.into_iter().map(|(c, l, q)| (kept[c], l, q)).collect(),
        status,
        dominated,
    }
}

/// The candidates the plan does not use that a node of the plan dominates, with those nodes.
fn dominated_by_plan(inst: &Instance, units: &Units) -> Vec<(usize, Vec<usize>)> {
    let mut used: Vec<usize> = units.iter().map(|u| u.0).collect();
    used.sort_unstable();
    used.dedup();
    (0..inst.cands.len())
        .filter(|c| used.binary_search(c).is_err())
        .filter_map(|b| {
            let by: Vec<usize> = used
                .iter()
                .copied()
                .filter(|&a| dominates(inst, a, b))
                .collect();
            (!by.is_empty()).then_some((b, by))
        })
        .collect()
}

/// The MIP on the pruned candidates, the greedy plan its fallback.
fn solve_pruned(inst: &Instance, backend: Backend, deadline: Instant) -> (Units, SolveStatus) {
    let nothing: Units = Vec::new();
    let incumbent = greedy(inst);
    match mip(inst, backend, deadline) {
        Ok((units, proven)) => {
            // the solver's answer, unless the time budget left it worse than the greedy one
            let better = incumbent
                .as_ref()
                .is_none_or(|g| inst.cost(&units) <= inst.cost(g) + 1e-9);
            if inst.check(&units).is_ok() && better {
                let status = if proven {
                    SolveStatus::Optimal
                } else {
                    SolveStatus::Feasible
                };
                return (units, status);
            }
            (incumbent.unwrap_or(nothing), SolveStatus::Feasible)
        }
        Err(ResolutionError::Infeasible) if incumbent.is_none() => {
            // nothing feasible ships; the caller reports the unfilled units
            (nothing, SolveStatus::Optimal)
        }
        Err(_) => (incumbent.unwrap_or(nothing), SolveStatus::Feasible),
    }
}

/// Candidates no optimal plan needs: dominated (no dearer, no less stock or capacity) by at
/// least `max_shipments` others. Returns the kept indexes and the pruned with their dominators.
pub fn prune(inst: &Instance) -> (Vec<usize>, Vec<(usize, Vec<usize>)>) {
    let k = if inst.ship_complete {
        1
    } else {
        inst.max_shipments
    };
    let n = inst.cands.len();
    let dominates = |a: usize, b: usize| dominates(inst, a, b);
    let mut kept = Vec::with_capacity(n);
    let mut dominated = Vec::new();
    for b in 0..n {
        let by: Vec<usize> = (0..n).filter(|&a| a != b && dominates(a, b)).collect();
        if by.len() >= k {
            dominated.push((b, by));
        } else {
            kept.push(b);
        }
    }
    (kept, dominated)
}

/// Whether candidate `a` is no dearer than `b` in any cost, with no less stock or capacity
/// (ties broken by index), so that `a` can take all of `b`'s units at no extra cost.
fn dominates(inst: &Instance, a: usize, b: usize) -> bool {
    let (ca, cb) = (&inst.cands[a], &inst.cands[b]);
    let skus = 0..inst.skus;
    let weak = ca.fixed <= cb.fixed
        && skus.clone().all(|s| ca.unit_of(s) <= cb.unit_of(s))
        && ca.capacity >= cb.capacity
        && ca.ats.iter().zip(&cb.ats).all(|(x, y)| x >= y);
    let strict = ca.fixed < cb.fixed
        || skus.clone().any(|s| ca.unit_of(s) < cb.unit_of(s))
        || ca.capacity > cb.capacity
        || ca.ats.iter().zip(&cb.ats).any(|(x, y)| x > y);
    weak && (strict || a < b)
}

/// The one node that ships everything, when no other plan can cost less.
fn single_node(inst: &Instance) -> Option<Units> {
    let demand = inst.demand_by_sku();
    let q = inst.total_units();
    let (best, cost) = inst
        .cands
        .iter()
        .enumerate()
        .filter(|(_, c)| c.capacity >= q && demand.iter().zip(&c.ats).all(|(d, a)| d <= a))
        .map(|(i, c)| {
            let units: f64 = (0..inst.skus)
                .map(|s| c.unit_of(s) * demand[s] as f64)
                .sum();
            (i, c.fixed + units)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    // lower bounds on every other kind of plan: each unit costs at least the cheapest of
    // its sku's holders (or the unfilled penalty, where cheaper)
    let mut fixed: Vec<f64> = inst.cands.iter().map(|c| c.fixed).collect();
    fixed.sort_by(f64::total_cmp);
    let per_unit: Vec<f64> = (0..inst.skus)
        .map(|s| {
            let cheapest = inst
                .cands
                .iter()
                .filter(|c| c.ats[s] > 0)
                .map(|c| c.unit_of(s))
                .fold(f64::INFINITY, f64::min);
            inst.unfilled_penalty.map_or(cheapest, |p| cheapest.min(p))
        })
        .collect();
    let units_at_least: f64 = (0..inst.skus)
        .filter(|&s| demand[s] > 0)
        .map(|s| per_unit[s] * demand[s] as f64)
        .sum();
    let mut bound = f64::INFINITY;
    let max = if inst.ship_complete {
        1
    } else {
        inst.max_shipments
    };
    if max >= 2 && fixed.len() >= 2 {
        bound = bound.min(fixed[0] + fixed[1] + inst.split_penalty + units_at_least);
    }
    if let Some(p) = inst.unfilled_penalty {
        if !inst.ship_complete {
            // one unit unfilled, at p instead of at least its sku's cheapest
            let dearest = (0..inst.skus)
                .filter(|&s| demand[s] > 0)
                .map(|s| per_unit[s])
                .fold(0.0, f64::max);
            bound = bound.min(fixed[0] + units_at_least - dearest + p);
        }
        bound = bound.min(p * q as f64);
    }
    if cost > bound + 1e-9 {
        return None;
    }
    Some(
        inst.lines
            .iter()
            .enumerate()
            .map(|(l, line)| (best, l, line.quantity))
            .collect(),
    )
}

/// A single-line order, exactly: for every set of nodes it could ship from, fill the line
/// from the cheapest per unit first.
fn single_line(inst: &Instance) -> Option<Units> {
    if inst.lines.len() != 1 || !inst.kits.is_empty() || inst.ship_complete {
        return None;
    }
    let line = &inst.lines[0];
    let unit = |c: usize| inst.cands[c].unit_of(line.sku);
    let mut order: Vec<usize> = (0..inst.cands.len()).collect();
    order.sort_by(|&a, &b| unit(a).total_cmp(&unit(b)));
    let k = inst.max_shipments.min(order.len());
    let subsets: usize = (1..=k).map(|r| binomial(order.len(), r)).sum();
    if subsets > ENUMERATION_LIMIT {
        return None;
    }
    let mut best: Option<(f64, Units)> = None;
    if inst.unfilled_penalty.is_some() {
        best = Some((inst.cost(&Vec::new()), Vec::new()));
    }
    let mut chosen = Vec::with_capacity(k);
    enumerate(&order, k, 0, &mut chosen, &mut |set| {
        let mut left = line.quantity;
        let mut units = Vec::with_capacity(set.len());
        for &c in set {
            let cand = &inst.cands[c];
            if inst.unfilled_penalty.is_some_and(|p| unit(c) >= p) {
                break;
            }
            let take = left.min(cand.ats[line.sku]).min(cand.capacity);
            if take > 0 {
                units.push((c, 0, take));
                left -= take;
            }
        }
        if units.len() == set.len() && inst.check(&units).is_ok() {
            let cost = inst.cost(&units);
            if best.as_ref().is_none_or(|(b, _)| cost < *b - 1e-9) {
                best = Some((cost, units));
            }
        }
    });
    best.map(|(_, units)| units)
}

fn binomial(n: usize, r: usize) -> usize {
    (0..r).fold(1usize, |acc, i| acc.saturating_mul(n - i) / (i + 1))
}

/// Calls `visit` with every subset of `order` of 1 to `k` elements, in `order`'s order.
fn enumerate(
    order: &[usize],
    k: usize,
    from: usize,
    chosen: &mut Vec<usize>,
    visit: &mut impl FnMut(&[usize]),
) {
    for i in from..order.len() {
        chosen.push(order[i]);
        visit(chosen);
        if chosen.len() < k {
            enumerate(order, k, i + 1, chosen, visit);
        }
        chosen.pop();
    }
}

/// A feasible plan without the solver, kept in case the solve budget runs out: nodes by
/// cost per unit of the whole order, each taking all it can.
pub(super) fn greedy(inst: &Instance) -> Option<Units> {
    let q = inst.total_units().max(1) as f64;
    let demand = inst.demand_by_sku();
    let mut order: Vec<usize> = (0..inst.cands.len()).collect();
    let key = |c: usize| {
        let cand = &inst.cands[c];
        let units: f64 = (0..inst.skus)
            .map(|s| cand.unit_of(s) * demand[s] as f64)
            .sum();
        (cand.fixed + units) / q
    };
    order.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
    let max = if inst.ship_complete {
        1
    } else {
        inst.max_shipments
    };
    let mut remaining: Vec<u64> = inst
        .lines
        .iter()
        .map(|l| if l.kit.is_some() { 0 } else { l.quantity })
        .collect();
    let mut kit_done = vec![false; inst.kits.len()];
    let mut units = Vec::new();
    let mut used = 0;
    for c in order {
        if used == max {
            break;
        }
        let cand = &inst.cands[c];
        let mut ats = cand.ats.clone();
        let mut cap = cand.capacity;
        let mut took = false;
        for (k, kit) in inst.kits.iter().enumerate() {
            if kit_done[k] {
                continue;
            }
            let mut need = vec![0u64; inst.skus];
            for &l in kit {
                need[inst.lines[l].sku] += inst.lines[l].quantity;
            }
            let total: u64 = need.iter().sum();
            if total <= cap && need.iter().zip(&ats).all(|(n, a)| n <= a) {
                for &l in kit {
                    units.push((c, l, inst.lines[l].quantity));
                }
                for (s, n) in need.iter().enumerate() {
                    ats[s] -= n;
                }
                cap -= total;
                kit_done[k] = true;
                took = true;
            }
        }
        for (l, r) in remaining.iter_mut().enumerate() {
            let s = inst.lines[l].sku;
            let take = (*r).min(ats[s]).min(cap);
            if take > 0 {
                units.push((c, l, take));
                ats[s] -= take;
                cap -= take;
                *r -= take;
                took = true;
            }
        }
        if took {
            used += 1;
        }
    }
    if inst.ship_complete {
        let shipped: u64 = units.iter().map(|u| u.2).sum();
        if shipped < inst.total_units() {
            units.clear();
        }
    }
    inst.check(&units).is_ok().then_some(units)
}

/// Solves the MIP; the units, and whether the solver proved them optimal.
pub(super) fn mip(
    inst: &Instance,
    backend: Backend,
    deadline: Instant,
) -> Result<(Units, bool), ResolutionError> {
    let shape = inst.mip_shape();
    let mut vars = ProblemVariables::new();
    let mut map: HashMap<Var, Variable> = HashMap::new();
    for (&(c, l), &ub) in &shape.x {
        map.insert(
            Var::X(c, l),
            vars.add(variable().integer().min(0).max(ub as f64)),
        );
    }
    for &(c, k) in &shape.z {
        map.insert(Var::Z(c, k), vars.add(variable().binary()));
    }
    for &c in &shape.y {
        map.insert(Var::Y(c), vars.add(variable().binary()));
    }
    for &l in &shape.u {
        let q = inst.lines[l].quantity as f64;
        map.insert(Var::U(l), vars.add(variable().integer().min(0).max(q)));
    }
    for &k in &shape.w {
        map.insert(Var::W(k), vars.add(variable().binary()));
    }
    map.insert(Var::S, vars.add(variable().binary()));
    map.insert(Var::One, vars.add(variable().min(1).max(1)));

    let affine = |terms: &[(f64, Var)]| {
        let mut e = Expression::with_capacity(terms.len());
        for (coef, v) in terms {
            e.add_mul(*coef, map[v]);
        }
        e
    };
    let objective = affine(&inst.objective(&shape));
    let constraints: Vec<good_lp::Constraint> = shape
        .rows(inst)
        .into_iter()
        .map(|(_, terms, op, rhs)| {
            let e = affine(&terms);
            match op {
                "<=" => e.leq(rhs),
                ">=" => e.geq(rhs),
                _ => e.eq(rhs),
            }
        })
        .collect();
    // what is left of the budget once the model is built; a sliver at least, so the solver
    // can still report the incumbent it starts from
    let seconds = deadline
        .saturating_duration_since(Instant::now())
        .as_secs_f64()
        .max(MIN_SOLVE_SECONDS);
    let use_highs = match backend {
        Backend::Microlp => false,
        Backend::Highs => true,
        Backend::Auto => HIGHS_BUILT && inst.cands.len() * inst.lines.len() > AUTO_HIGHS_ABOVE,
    };
    let (values, status) = match use_highs {
        false => {
            let mut model = vars
                .minimise(objective)
                .using(microlp)
                .with_time_limit(seconds);
            for c in constraints {
                model.add_constraint(c);
            }
            let solution = model.solve()?;
            (read(&solution, &map, inst), solution.status())
        }
        #[cfg(not(feature = "highs"))]
        true => panic!(
            "the HiGHS solver is not built into this binary (cargo feature `highs`); config \
             loading refuses sourcing.solver = \"highs\" without it"
        ),
        #[cfg(feature = "highs")]
        true => {
            let mut model = vars
                .minimise(objective)
                .using(highs)
                .set_threads(1)
                .set_time_limit(seconds);
            for (option, value) in [
                ("output_flag", false),
                ("log_to_console", false),
                ("mip_detect_symmetry", false),
            ] {
                model = model.set_option(option, value);
            }
            // a plan marked optimal is proven so: HiGHS stops at its default gaps (1e-4
            // relative) with the gap still open, which good_lp reports as a gap limit
            model = model
                .set_option("mip_heuristic_effort", 0.0)
                .set_option("mip_rel_gap", 0.0)
                .set_option("mip_abs_gap", 0.0)
                .set_option("parallel", "off");
            for c in constraints {
                model.add_constraint(c);
            }
            let solution = model.solve()?;
            (read(&solution, &map, inst), solution.status())
        }
    };
    // both solvers run with zero MIP gaps (microlp's default; set for HiGHS), so a gap limit is
    // a closed gap whose reported value kept a rounding remainder: proven, like Optimal. A time
    // limit is not.
    Ok((
        values,
        matches!(status, SolutionStatus::Optimal | SolutionStatus::GapLimit),
    ))
}

/// The units of a solution: x as given, and every line of a kit whose z is set.
fn read(solution: &impl Solution, map: &HashMap<Var, Variable>, inst: &Instance) -> Units {
    let mut units = Vec::new();
    for (v, var) in map {
        let value = solution.value(*var).round();
        if value < 0.5 {
            continue;
        }
        match *v {
            Var::X(c, l) => units.push((c, l, value as u64)),
            Var::Z(c, k) => {
                units.extend(inst.kits[k].iter().map(|&l| (c, l, inst.lines[l].quantity)));
            }
            _ => {}
        }
    }
    units.sort_unstable();
    units
}

/// The `optimal` strategy with its solver and time budget.
#[derive(Debug, Clone, Copy)]
pub struct Optimal {
    pub backend: Backend,
    pub budget: Duration,
}

impl super::Strategy for Optimal {
    fn kind(&self) -> crate::domain::StrategyKind {
        crate::domain::StrategyKind::Optimal
    }

    fn assign(&self, problem: &super::Problem<'_>) -> super::Assignment {
        let inst = problem.instance();
        let solved = solve(inst, self.backend, self.budget);
        let passed_over = explain(problem, inst, &solved);
        super::Assignment {
            units: solved.units,
            passed_over,
            status: solved.status,
        }
    }
}

/// Why each candidate the plan does not use was passed over. A dominated candidate names
/// the nodes that dominate it. Any other is dearer: its extra cost is what the plan would cost
/// more if the node replaced the shipment it replaces most cheaply, whole.
fn explain(
    problem: &super::Problem<'_>,
    inst: &Instance,
    solved: &Solved,
) -> Vec<super::PassedOver> {
    use crate::domain::NodeReason;
    let mut shipments: std::collections::BTreeMap<usize, Vec<u64>> = Default::default();
    for &(c, l, q) in &solved.units {
        shipments.entry(c).or_insert_with(|| vec![0; inst.skus])[inst.lines[l].sku] += q;
    }
    // (cost to serve, opportunity cost) of a shipment from c
    let ship_cost = |c: usize, per_sku: &[u64]| {
        let cand = &inst.cands[c];
        let units: u64 = per_sku.iter().sum();
        let kept: f64 = per_sku
            .iter()
            .enumerate()
            .map(|(s, &q)| cand.kept_of(s, q))
            .sum();
        (cand.fixed + cand.unit * units as f64, kept)
    };
    let dominated: HashMap<usize, &Vec<usize>> =
        solved.dominated.iter().map(|(c, by)| (*c, by)).collect();
    let mut out = Vec::new();
    for c in 0..inst.cands.len() {
        if shipments.contains_key(&c) {
            continue;
        }
        if let Some(by) = dominated.get(&c) {
            let names: Vec<&str> = by
                .iter()
                .take(3)
                .map(|&d| problem.candidates[d].node.id.as_str())
                .collect();
            let more = if by.len() > 3 {
                format!(" and {} more", by.len() - 3)
            } else {
                String::new()
            };
            out.push(super::PassedOver {
                candidate: c,
                reason: NodeReason::Dearer,
                detail: format!(
                    "dominated by {}{more}: no dearer, with as much stock and capacity",
                    names.join(", ")
                ),
                extra_cost: 0.0,
            });
            continue;
        }
        let cand = &inst.cands[c];
        let swap = shipments
            .iter()
            .filter(|(_, per_sku)| {
                per_sku.iter().sum::<u64>() <= cand.capacity
                    && per_sku.iter().zip(&cand.ats).all(|(q, a)| q <= a)
            })
            .map(|(&s, per_sku)| {
                let ((serve_c, kept_c), (serve_s, kept_s)) =
                    (ship_cost(c, per_sku), ship_cost(s, per_sku));
                (s, serve_c - serve_s, kept_c - kept_s)
            })
            .min_by(|a, b| (a.1 + a.2).total_cmp(&(b.1 + b.2)));
        let (detail, extra) = match swap {
            Some((s, serve, kept)) if kept > 1e-9 && serve < 1e-9 => (
                format!(
                    "kept for later demand: +{kept:.2} (shipping instead of {} would cost {:.2} less to serve)",
                    problem.candidates[s].node.id,
                    -serve.min(0.0)
                ),
                (serve + kept).max(0.0),
            ),
            Some((s, serve, kept)) if kept > 1e-9 => (
                format!(
                    "shipping instead of {} would cost {serve:.2} more, and its units are kept for later demand: +{kept:.2}",
                    problem.candidates[s].node.id,
                ),
                serve + kept,
            ),
            Some((s, serve, kept)) => (
                format!(
                    "shipping instead of {} would cost {:.2} more",
                    problem.candidates[s].node.id,
                    (serve + kept).max(0.0)
                ),
                (serve + kept).max(0.0),
            ),
            None => (
                "holds too little of the order to replace any shipment whole; no cheaper plan uses it"
                    .to_owned(),
                0.0,
            ),
        };
        out.push(super::PassedOver {
            candidate: c,
            reason: NodeReason::Dearer,
            detail,
            extra_cost: extra,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::NaiveDate;
    use proptest::prelude::*;

    use super::*;
    use crate::config::{Config, ConfigSource};
    use crate::domain::{DeliveryMode, GeoPoint, Order, OrderLine, StrategyKind};
    use crate::sourcing::instance::{Cand, Line, brute_force, crowded};
    use crate::sourcing::{Admitted, Problem, Strategies};

    const BUDGET: Duration = Duration::from_secs(5);

    /// Tiny instances brute force can enumerate: up to 3 candidates, 2 lines, 3 units.
    fn tiny() -> impl proptest::strategy::Strategy<Value = Instance> {
        let cand = (
            0.0..10.0f64,
            0.0..3.0f64,
            proptest::collection::vec(0u64..=3, 2),
            1u64..=6,
            // look-ahead's opportunity cost per sku, or none
            prop_oneof![Just(Vec::new()), proptest::collection::vec(0.0..4.0f64, 2)],
        )
            .prop_map(|(fixed, unit, ats, capacity, kept)| Cand {
                fixed: (fixed * 100.0).round() / 100.0,
                unit: (unit * 100.0).round() / 100.0,
                ats,
                capacity,
                kept: kept.iter().map(|k| (k * 100.0).round() / 100.0).collect(),
            });
        (
            proptest::collection::vec(cand, 1..=3),
            proptest::collection::vec((0usize..2, 1u64..=3), 1..=2),
            any::<bool>(),
            1usize..=3,
            0.0..3.0f64,
            prop_oneof![Just(None), (0.0..15.0f64).prop_map(Some)],
            any::<bool>(),
        )
            .prop_map(
                |(cands, lines, kit, max_shipments, split, unfilled, ship_complete)| {
                    let kit = kit && lines.len() == 2;
                    Instance {
                        skus: 2,
                        cands,
                        lines: lines
                            .iter()
                            .map(|&(sku, quantity)| Line {
                                sku,
                                quantity,
                                kit: kit.then_some(0),
                            })
                            .collect(),
                        kits: if kit { vec![vec![0, 1]] } else { vec![] },
                        max_shipments,
                        split_penalty: (split * 100.0).round() / 100.0,
                        unfilled_penalty: unfilled.map(|p: f64| (p * 100.0).round() / 100.0),
                        ship_complete,
                    }
                },
            )
    }

    /// Matches brute force: both feasible with the same cost, or both without a plan.
    fn agrees(inst: &Instance, units: &Units) -> Result<(), TestCaseError> {
        match brute_force(inst) {
            Some((best, _)) => {
                prop_assert!(
                    inst.check(units).is_ok(),
                    "{:?}: {units:?}",
                    inst.check(units)
                );
                let cost = inst.cost(units);
                prop_assert!(
                    (cost - best).abs() < 1e-6,
                    "cost {cost}, brute force {best}"
                );
            }
            None => prop_assert!(inst.check(units).is_err(), "brute force found no plan"),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn optimal_matches_brute_force_with_microlp(inst in tiny()) {
            let solved = solve(&inst, Backend::Microlp, BUDGET);
            prop_assert!(matches!(solved.status, SolveStatus::Optimal | SolveStatus::ExactFastPath));
            agrees(&inst, &solved.units)?;
        }

        #[cfg(feature = "highs")]
        #[test]
        fn optimal_matches_brute_force_with_highs(inst in tiny()) {
            let solved = solve(&inst, Backend::Highs, BUDGET);
            prop_assert!(matches!(solved.status, SolveStatus::Optimal | SolveStatus::ExactFastPath));
            agrees(&inst, &solved.units)?;
        }

        #[test]
        fn the_mip_alone_matches_brute_force(inst in tiny()) {
            let units = match mip(&inst, Backend::Microlp, Instant::now() + BUDGET) {
                Ok((units, proven)) => { prop_assert!(proven); units }
                Err(_) => Vec::new(),
            };
            agrees(&inst, &units)?;
        }

        #[test]
        fn fast_paths_give_the_mip_cost(inst in tiny()) {
            let mip_cost = mip(&inst, Backend::Microlp, Instant::now() + BUDGET).ok().map(|(u, _)| inst.cost(&u));
            for units in [single_node(&inst), single_line(&inst)].into_iter().flatten() {
                prop_assert!(inst.check(&units).is_ok());
                let cost = inst.cost(&units);
                prop_assert_eq!(mip_cost.map(|c| (c * 1e6).round()), Some((cost * 1e6).round()));
            }
        }
    }

    /// Larger instances: 10 candidates, 6 lines over 3 skus, some kits.
    #[cfg(feature = "highs")]
    fn larger() -> impl proptest::strategy::Strategy<Value = Instance> {
        let cand = (
            0.0..12.0f64,
            0.2..3.0f64,
            proptest::collection::vec(0u64..=8, 3),
            3u64..=30,
            prop_oneof![Just(Vec::new()), proptest::collection::vec(0.0..3.0f64, 3)],
        )
            .prop_map(|(fixed, unit, ats, capacity, kept)| Cand {
                fixed,
                unit,
                ats,
                capacity,
                kept,
            });
        (
            proptest::collection::vec(cand, 10),
            proptest::collection::vec((0usize..3, 1u64..=5), 6),
            1usize..=4,
            any::<bool>(),
        )
            .prop_map(|(cands, lines, max_shipments, kit)| Instance {
                skus: 3,
                cands,
                lines: lines
                    .iter()
                    .enumerate()
                    .map(|(i, &(sku, quantity))| Line {
                        sku,
                        quantity,
                        kit: (kit && i < 2).then_some(0),
                    })
                    .collect(),
                kits: if kit { vec![vec![0, 1]] } else { vec![] },
                max_shipments,
                split_penalty: 1.5,
                unfilled_penalty: Some(20.0),
                ship_complete: false,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(60))]

        #[cfg(feature = "highs")]
        #[test]
        fn both_backends_and_pruning_agree_on_larger_instances(inst in larger()) {
            let micro = solve(&inst, Backend::Microlp, BUDGET);
            let highs = solve(&inst, Backend::Highs, BUDGET);
            let (full, _) = mip(&inst, Backend::Highs, Instant::now() + BUDGET).expect("unfilled units keep it feasible");
            prop_assert!(inst.check(&micro.units).is_ok());
            prop_assert!(inst.check(&highs.units).is_ok());
            let (a, b, c) = (inst.cost(&micro.units), inst.cost(&highs.units), inst.cost(&full));
            prop_assert!((a - b).abs() < 1e-6 && (a - c).abs() < 1e-6, "microlp {a}, highs {b}, unpruned {c}");
        }
    }

    #[test]
    fn dominated_candidates_are_pruned_only_with_enough_dominators() {
        let cand = |fixed: f64, ats: u64| Cand {
            fixed,
            unit: 1.0,
            ats: vec![ats],
            capacity: 10,
            kept: Vec::new(),
        };
        let inst = Instance {
            skus: 1,
            cands: vec![cand(1.0, 5), cand(2.0, 5), cand(3.0, 4), cand(1.0, 5)],
            lines: vec![Line {
                sku: 0,
                quantity: 8,
                kit: None,
            }],
            kits: vec![],
            max_shipments: 2,
            split_penalty: 0.0,
            unfilled_penalty: None,
            ship_complete: false,
        };
        let (kept, dominated) = prune(&inst);
        // 0 and 3 tie and are kept; 1 is dominated by both; 2 by 0, 1 and 3
        assert_eq!(kept, vec![0, 3]);
        assert_eq!(
            dominated.iter().map(|d| d.0).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let solved = solve(&inst, Backend::Microlp, BUDGET);
        assert_eq!(inst.cost(&solved.units), 1.0 + 1.0 + 8.0);
    }

    #[test]
    fn one_node_is_taken_at_once_only_where_every_other_plan_costs_as_much_sku_by_sku() {
        let cand = |fixed: f64, unit: f64, ats: Vec<u64>| Cand {
            fixed,
            unit,
            ats,
            capacity: 10,
            kept: Vec::new(),
        };
        let line = |sku: usize, quantity: u64| Line {
            sku,
            quantity,
            kit: None,
        };
        // one line of 2, one shipment: A ships both for 1.90, B ships 1 for 0.60 and the
        // other unit goes unfilled at 1.00, which costs less
        let inst = Instance {
            skus: 1,
            cands: vec![cand(0.0, 0.95, vec![2]), cand(0.1, 0.5, vec![1])],
            lines: vec![line(0, 2)],
            kits: vec![],
            max_shipments: 1,
            split_penalty: 0.0,
            unfilled_penalty: Some(1.0),
            ship_complete: false,
        };
        assert_eq!(single_node(&inst), None);
        let solved = solve(&inst, Backend::Microlp, BUDGET);
        assert!((inst.cost(&solved.units) - 1.6).abs() < 1e-9);
        // two skus: A holds both (1 + 2 × 1.00), B only the second (1 + 0.00); no two-node
        // plan can cost less than 1 + 1 + 1.00 for the first sku, which only A holds
        let inst = Instance {
            skus: 2,
            cands: vec![cand(1.0, 1.0, vec![1, 1]), cand(1.0, 0.0, vec![0, 1])],
            lines: vec![line(0, 1), line(1, 1)],
            kits: vec![],
            max_shipments: 2,
            split_penalty: 0.0,
            unfilled_penalty: None,
            ship_complete: false,
        };
        let units = single_node(&inst).expect("A at once");
        assert!((inst.cost(&units) - 3.0).abs() < 1e-9);
        agrees(&inst, &units).unwrap();
    }

    #[test]
    fn an_exhausted_budget_still_returns_a_feasible_plan() {
        // by the search, and with a kit by the MIP
        let mut inst = crowded(40, 4);
        for kit in [false, true] {
            if kit {
                inst.lines[0].kit = Some(0);
                inst.lines[1].kit = Some(0);
                inst.kits = vec![vec![0, 1]];
            }
            let solved = solve(&inst, Backend::Microlp, Duration::from_nanos(1));
            assert!(inst.check(&solved.units).is_ok());
            assert!(!solved.units.is_empty());
            assert_eq!(solved.status, SolveStatus::Feasible, "kit: {kit}");
        }
    }

    /// A deterministic stream of numbers for test orders.
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn optimal_never_costs_more_than_the_baselines_on_the_demo_network() {
        let config = Config::load(ConfigSource::Embedded, std::iter::empty()).unwrap();
        let stock = crate::store::seed_view(&config.stock);
        let skus: Vec<String> = {
            let mut s: Vec<String> = stock.keys().cloned().collect();
            s.sort();
            s
        };
        let strategies = Strategies::new(Backend::Microlp, BUDGET);
        let today = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let segments = config.segments.names();
        let mut seed = 42u64;
        let (mut compared, mut cheaper) = (0, 0);
        for i in 0..300 {
            let n_lines = 1 + lcg(&mut seed) as usize % 6;
            let lines: Vec<OrderLine> = (0..n_lines)
                .map(|l| OrderLine {
                    line_id: l.to_string(),
                    sku: skus[lcg(&mut seed) as usize % skus.len()].clone(),
                    quantity: 1 + lcg(&mut seed) % 4,
                    group: (n_lines > 2 && l < 2 && i % 5 == 0).then(|| "kit".to_owned()),
                })
                .collect();
            let order = Order {
                order_id: format!("o{i}"),
                segment: segments[i % segments.len()].clone(),
                destination: GeoPoint {
                    lat: 36.5 + (lcg(&mut seed) % 700) as f64 / 100.0,
                    lon: -9.0 + (lcg(&mut seed) % 1200) as f64 / 100.0,
                },
                country: "ES".into(),
                lines,
                delivery: DeliveryMode::Ship,
                ship_complete: i % 7 == 0,
                deliver_by: None,
            };
            let rules = config.segments.get(&order.segment).unwrap();
            let admitted = Admitted::under(&order, rules, &config.network).unwrap();
            let problem =
                Problem::build(&admitted, &config.network, &stock, &HashMap::new(), today);
            let plan = |kind| problem.finish(kind, &strategies.get(kind).assign(&problem));
            let optimal = plan(StrategyKind::Optimal);
            for kind in [StrategyKind::Nearest, StrategyKind::Priority] {
                match (plan(kind), &optimal) {
                    (Ok(base), Ok(best)) => {
                        compared += 1;
                        assert!(
                            best.total_cost <= base.total_cost + 0.011,
                            "order {i}: optimal {} > {kind} {}",
                            best.total_cost,
                            base.total_cost
                        );
                        if best.total_cost < base.total_cost - 0.01 {
                            cheaper += 1;
                        }
                    }
                    (Ok(base), Err(e)) => panic!(
                        "order {i}: {kind} found a plan ({}) and optimal none: {e}",
                        base.total_cost
                    ),
                    (Err(_), _) => {}
                }
            }
        }
        assert!(compared > 400, "{compared} comparisons");
        assert!(cheaper > 0);
    }
}
