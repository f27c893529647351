//! The `optimal` strategy: the plan of least cost to serve, proven optimal, by mixed-integer
//! programming (good_lp) on the model of `solver-models/sourcing.md`.
//!
//! Before the solver: candidates dominated by at least `max_shipments` others are pruned (any
//! plan using one can swap it for an unused dominator at no extra cost), and two cases are
//! solved exactly without it: one node that ships the whole order more cheaply than any other
//! plan could cost, and single-line orders, enumerated. The solver gets a time budget; when it
//! runs out, the best feasible plan found is returned and marked as such.

use std::collections::HashMap;
use std::time::Duration;

use good_lp::{
    Expression, ProblemVariables, ResolutionError, Solution, SolutionStatus, SolverModel, Variable,
    WithTimeLimit, highs, microlp, variable,
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
    /// models.
    Highs,
}

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

/// The least-cost plan for an instance.
pub fn solve(inst: &Instance, backend: Backend, budget: Duration) -> Solved {
    let (kept, dominated) = prune(inst);
    let sub = Instance {
        cands: kept.iter().map(|&c| inst.cands[c].clone()).collect(),
        ..inst.clone()
    };
    let (units, status) = solve_pruned(&sub, backend, budget);
    Solved {
        units: units.into_iter().map(|(c, l, q)| (kept[c], l, q)).collect(),
        status,
        dominated,
    }
}

fn solve_pruned(inst: &Instance, backend: Backend, budget: Duration) -> (Units, SolveStatus) {
    let nothing: Units = Vec::new();
    if inst.cands.is_empty() {
        return (nothing, SolveStatus::ExactFastPath);
    }
    if let Some(units) = single_node(inst) {
        return (units, SolveStatus::ExactFastPath);
    }
    if let Some(units) = single_line(inst) {
        return (units, SolveStatus::ExactFastPath);
    }
    let incumbent = greedy(inst);
    match mip(inst, backend, budget) {
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
    let dominates = |a: usize, b: usize| {
        let (ca, cb) = (&inst.cands[a], &inst.cands[b]);
        let weak = ca.fixed <= cb.fixed
            && ca.unit <= cb.unit
            && ca.capacity >= cb.capacity
            && ca.ats.iter().zip(&cb.ats).all(|(x, y)| x >= y);
        let strict = ca.fixed < cb.fixed
            || ca.unit < cb.unit
            || ca.capacity > cb.capacity
            || ca.ats.iter().zip(&cb.ats).any(|(x, y)| x > y);
        weak && (strict || a < b)
    };
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

/// The one node that ships everything, when no other plan can cost less.
fn single_node(inst: &Instance) -> Option<Units> {
    let demand = inst.demand_by_sku();
    let q = inst.total_units();
    let (best, cost) = inst
        .cands
        .iter()
        .enumerate()
        .filter(|(_, c)| c.capacity >= q && demand.iter().zip(&c.ats).all(|(d, a)| d <= a))
        .map(|(i, c)| (i, c.fixed + c.unit * q as f64))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    // lower bounds on every other kind of plan
    let mut fixed: Vec<f64> = inst.cands.iter().map(|c| c.fixed).collect();
    fixed.sort_by(f64::total_cmp);
    let min_unit = inst
        .cands
        .iter()
        .map(|c| c.unit)
        .fold(f64::INFINITY, f64::min);
    let mut bound = f64::INFINITY;
    let max = if inst.ship_complete {
        1
    } else {
        inst.max_shipments
    };
    let per_unit = match inst.unfilled_penalty {
        Some(p) => min_unit.min(p),
        None => min_unit,
    };
    if max >= 2 && fixed.len() >= 2 {
        bound = bound.min(fixed[0] + fixed[1] + inst.split_penalty + per_unit * q as f64);
    }
    if let Some(p) = inst.unfilled_penalty {
        if !inst.ship_complete {
            bound = bound.min(fixed[0] + per_unit * (q - 1) as f64 + p);
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
    let mut order: Vec<usize> = (0..inst.cands.len()).collect();
    order.sort_by(|&a, &b| inst.cands[a].unit.total_cmp(&inst.cands[b].unit));
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
            if inst.unfilled_penalty.is_some_and(|p| cand.unit >= p) {
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
fn greedy(inst: &Instance) -> Option<Units> {
    let q = inst.total_units().max(1) as f64;
    let mut order: Vec<usize> = (0..inst.cands.len()).collect();
    let key = |c: usize| inst.cands[c].fixed / q + inst.cands[c].unit;
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
fn mip(
    inst: &Instance,
    backend: Backend,
    budget: Duration,
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
    let seconds = budget.as_secs_f64();
    let (values, status) = match backend {
        Backend::Microlp => {
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
        Backend::Highs => {
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
            model = model
                .set_option("mip_heuristic_effort", 0.0)
                .set_option("parallel", "off");
            for c in constraints {
                model.add_constraint(c);
            }
            let solution = model.solve()?;
            (read(&solution, &map, inst), solution.status())
        }
    };
    Ok((values, matches!(status, SolutionStatus::Optimal)))
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
        let solved = solve(&inst, self.backend, self.budget);
        let passed_over = explain(problem, &inst, &solved);
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
    let ship_cost = |c: usize, per_sku: &[u64]| {
        let units: u64 = per_sku.iter().sum();
        inst.cands[c].fixed + inst.cands[c].unit * units as f64
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
            .map(|(&s, per_sku)| (s, ship_cost(c, per_sku) - ship_cost(s, per_sku)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let (detail, extra) = match swap {
            Some((s, delta)) => (
                format!(
                    "shipping instead of {} would cost {:.2} more",
                    problem.candidates[s].node.id,
                    delta.max(0.0)
                ),
                delta.max(0.0),
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
