//! An exact search over the sets of at most M nodes a plan can ship from, for orders without
//! kits.
//!
//! For a fixed set S of nodes such an order is a transportation problem: each sku's units go
//! to the nodes of S that ship them most cheaply, up to their stock, and the rest are unfilled
//! (at the segment's penalty). Where no node's capacity binds (each could ship all it holds of
//! the order) it splits by sku and is filled cheapest first; otherwise it is solved as a
//! min-cost flow. So a plan's cost is `P·Q − σ + Σ_{n∈S} (F_n + σ) − g(S)`, where g(S)
//! is what shipping saves against leaving every unit unfilled. The search enumerates the sets
//! depth first and skips every set a lower bound puts at or above the best plan found:
//!
//! - **amortised, per node:** a plan using node n pays F_n, and a unit from any other node at
//!   least that node's unit cost plus its parcel and split penalty spread over all the units
//!   it could ship;
//! - **coverage:** g is submodular (the value of a transportation problem is M♮-concave in
//!   its supplies, and M♮-concave functions are submodular; without binding capacities each
//!   sku's part is simply the weighted rank of a uniform matroid), so adding a node to a set
//!   saves at most what it saves added to any subset of that set: alone (its reduced saving, nodes being in order of it), or beside the set's
//!   first node (the row of pair costs the walk computes for each first node).
//!
//! Where the segment allows no unfilled unit, the penalty used is above the cost of any plan
//! that ships everything, and a best plan that still leaves units means no plan exists.

use std::time::Instant;

use super::instance::{Instance, Units};

/// Node sets evaluated between two looks at the clock.
const CLOCK_EVERY: u32 = 64;

/// The most shipments a plan the search takes may have; the MIP takes larger limits.
const MAX_SET: usize = 8;

/// The search's answer: the units of the best plan found, and whether it is proven least.
pub(super) type Found = (Units, bool);

/// The least-cost plan, or `None` where the instance has kits (unless it ships complete) or a
/// limit of more than [`MAX_SET`] shipments (the MIP takes those). Past `deadline` the better of the best plan
/// found so far and the plan `fallback` makes is returned, unproven.
pub(super) fn search(
    inst: &Instance,
    deadline: Instant,
    fallback: impl FnOnce() -> Option<Units>,
) -> Option<Found> {
    if inst.ship_complete {
        // one node ships everything, kits included, or nothing does
        return Some(ship_complete(inst));
    }
    if !inst.kits.is_empty() {
        return None;
    }
    let sets = Sets::new(inst)?;
    let (units, proven) = sets.run(inst, deadline);
    if proven {
        return Some((units, true));
    }
    let found = inst.check(&units).is_ok().then_some(units);
    let better = match (found, fallback().filter(|u| inst.check(u).is_ok())) {
        (Some(a), Some(b)) if inst.cost(&b) < inst.cost(&a) - 1e-9 => b,
        (Some(a), _) => a,
        (None, b) => b.unwrap_or_default(),
    };
    Some((better, false))
}

/// A ship-complete order: one node with everything, or nothing where the segment allows it.
fn ship_complete(inst: &Instance) -> Found {
    let demand = inst.demand_by_sku();
    let q = inst.total_units();
    let whole = |c: &super::instance::Cand| {
        c.capacity >= q && demand.iter().zip(&c.ats).all(|(d, a)| d <= a)
    };
    let none = inst.unfilled_penalty.map(|p| p * q as f64);
    let best = inst
        .cands
        .iter()
        .enumerate()
        .filter(|(_, c)| whole(c))
        .map(|(i, c)| {
            let units: f64 = (0..inst.skus)
                .map(|s| c.unit_of(s) * demand[s] as f64)
                .sum();
            (i, c.fixed + units)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let units = match best {
        Some((c, cost)) if none.is_none_or(|n| cost <= n) => inst
            .lines
            .iter()
            .enumerate()
            .map(|(l, line)| (c, l, line.quantity))
            .collect(),
        _ => Vec::new(),
    };
    (units, true)
}

/// The numbers the search runs on, nodes in search order.
struct Sets {
    /// Skus the order asks for, and how many units of each.
    skus: Vec<usize>,
    demand: Vec<u64>,
    /// The penalty per unfilled unit the search prices with.
    penalty: f64,
    max: usize,
    split: f64,
    /// Instance index of each node, in search order.
    node: Vec<usize>,
    fixed: Vec<f64>,
    /// Per node and sku (row-major, `skus.len()` per node): units it may ship of the order,
    /// and what each saves against leaving it unfilled (penalty less unit cost).
    give: Vec<u64>,
    save: Vec<f64>,
    /// Per node: what it saves alone, less its parcel and the split penalty.
    reduced: Vec<f64>,
    /// Per node: a lower bound on every plan that uses it.
    bound: Vec<f64>,
    /// Per node: its capacity, where that is below all it could ship of the order.
    binds: Vec<Option<u64>>,
}

impl Sets {
    fn new(inst: &Instance) -> Option<Sets> {
        let all = inst.demand_by_sku();
        let skus: Vec<usize> = (0..inst.skus).filter(|&s| all[s] > 0).collect();
        let demand: Vec<u64> = skus.iter().map(|&s| all[s]).collect();
        let k = skus.len();
        let q = inst.total_units();
        let split = inst.split_penalty;
        let max = inst.max_shipments;
        if max == 0 || max > MAX_SET {
            return None;
        }
        let penalty = inst.unfilled_penalty.unwrap_or_else(|| {
            // above any plan that ships everything: M parcels at the dearest, every unit at
            // the dearest unit cost, every split
            let fixed = inst.cands.iter().map(|c| c.fixed).fold(0.0, f64::max);
            let unit = inst
                .cands
                .iter()
                .flat_map(|c| skus.iter().map(|&s| c.unit_of(s)))
                .fold(0.0, f64::max);
            1.0 + (fixed + split) * max as f64 + unit * q as f64
        });
        // per useful node, in candidate order: index, units it may give and what each saves
        // per sku, and its reduced saving alone; per sku, the cheapest amortised rate
        let mut index = Vec::new();
        let mut give = Vec::new();
        let mut save = Vec::new();
        let mut reduced = Vec::new();
        let mut capacity = Vec::new();
        let mut cheapest = vec![f64::INFINITY; k];
        for (i, c) in inst.cands.iter().enumerate() {
            let (mut cover, mut alone) = (0u64, 0.0);
            for (&s, &d) in skus.iter().zip(&demand) {
                let (g, v) = (c.ats[s].min(d), penalty - c.unit_of(s));
                if g > 0 && v > 0.0 {
                    cover += g;
                    alone += g as f64 * v;
                }
            }
            if cover == 0 {
                continue;
            }
            let ships = cover.min(c.capacity);
            if ships < cover {
                // alone, the node ships the units that save most, up to its capacity
                let mut units: Vec<(f64, u64)> = skus
                    .iter()
                    .zip(&demand)
                    .map(|(&s, &d)| (penalty - c.unit_of(s), c.ats[s].min(d)))
                    .filter(|&(v, g)| g > 0 && v > 0.0)
                    .collect();
                units.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
                let mut left = ships;
                alone = 0.0;
                for (v, g) in units {
                    let take = g.min(left);
                    alone += take as f64 * v;
                    left -= take;
                }
            }
            // a unit from this node costs at least its unit cost and its share of the parcel
            let share = (c.fixed + split) / ships as f64;
            for (j, (&s, &d)) in skus.iter().zip(&demand).enumerate() {
                let (g, v) = (c.ats[s].min(d), penalty - c.unit_of(s));
                give.push(g);
                save.push(v);
                let rate = if g > 0 && v > 0.0 {
                    c.unit_of(s) + share
                } else {
                    f64::INFINITY
                };
                cheapest[j] = cheapest[j].min(rate);
            }
            index.push(i);
            reduced.push(alone - c.fixed - split);
            capacity.push((ships < cover).then_some(ships));
        }
        let mut sets = Sets {
            skus,
            demand,
            penalty,
            max,
            split,
            node: Vec::with_capacity(index.len()),
            fixed: Vec::with_capacity(index.len()),
            give: Vec::with_capacity(give.len()),
            save: Vec::with_capacity(save.len()),
            reduced: Vec::with_capacity(index.len()),
            bound: Vec::with_capacity(index.len()),
            binds: Vec::with_capacity(index.len()),
        };
        // nodes in order of what they save alone, less their parcel: most first
        let mut keyed: Vec<(f64, f64, usize)> = (0..index.len())
            .map(|r| {
                let row = r * k..(r + 1) * k;
                let fixed = inst.cands[index[r]].fixed;
                let bound = sets.node_bound(fixed, &give[row.clone()], &save[row], &cheapest);
                (reduced[r], bound, r)
            })
            .collect();
        keyed.sort_unstable_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(a.1.total_cmp(&b.1))
                .then(a.2.cmp(&b.2))
        });
        for &(reduced, bound, r) in &keyed {
            sets.node.push(index[r]);
            sets.fixed.push(inst.cands[index[r]].fixed);
            sets.give.extend_from_slice(&give[r * k..(r + 1) * k]);
            sets.save.extend_from_slice(&save[r * k..(r + 1) * k]);
            sets.reduced.push(reduced.max(0.0));
            sets.bound.push(bound);
            sets.binds.push(capacity[r]);
        }
        Some(sets)
    }

    fn k(&self) -> usize {
        self.skus.len()
    }

    /// A lower bound on every plan that ships from a node (its parcel cost, the units it may
    /// give of each sku and what each saves): its units at its unit cost where that is
    /// cheapest, every other unit at no less than `rates` (the cheapest amortised rate of any
    /// node for the sku) or unfilled.
    fn node_bound(&self, fixed: f64, give: &[u64], save: &[f64], rates: &[f64]) -> f64 {
        let mut cost = fixed;
        for (j, &d) in self.demand.iter().enumerate() {
            let other = rates[j].min(self.penalty);
            let unit = self.penalty - save[j];
            let here = if unit < other { give[j].min(d) } else { 0 };
            cost += unit * here as f64 + other * (d - here) as f64;
        }
        cost
    }

    fn run(&self, inst: &Instance, deadline: Instant) -> Found {
        let q = inst.total_units() as f64;
        let mut walk = Walk {
            sets: self,
            best_cost: self.penalty * q,
            best: Vec::new(),
            chosen: Vec::with_capacity(self.max),
            row: Vec::new(),
            evaluated: 0,
            deadline,
            stopped: false,
        };
        walk.walk();
        let Walk { best, stopped, .. } = walk;
        let units = self.units(inst, &best);
        if inst.unfilled_penalty.is_none()
            && units.iter().map(|u| u.2).sum::<u64>() < inst.total_units()
        {
            // no plan ships everything, or none was found in time
            return (Vec::new(), !stopped);
        }
        (units, !stopped)
    }

    /// What the nodes at `positions` ship of each sku, as (position, sku, units): cheapest
    /// first, or by [`Sets::transport`] where a node's capacity binds.
    fn amounts(&self, positions: &[usize]) -> Vec<(usize, usize, u64)> {
        if positions.iter().any(|&p| self.binds[p].is_some()) {
            return self.transport(positions).1;
        }
        let k = self.k();
        let mut out = Vec::new();
        for (j, &d) in self.demand.iter().enumerate() {
            let mut offers: Vec<(f64, usize)> = positions
                .iter()
                .filter(|&&p| self.give[p * k + j] > 0 && self.save[p * k + j] > 0.0)
                .map(|&p| (self.save[p * k + j], p))
                .collect();
            offers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut left = d;
            for (_, p) in offers {
                let take = self.give[p * k + j].min(left);
                if take > 0 {
                    out.push((p, j, take));
                    left -= take;
                }
            }
        }
        out
    }

    /// The plan of the nodes at `positions`, in the instance's units.
    fn units(&self, inst: &Instance, positions: &[usize]) -> Units {
        let mut units = Vec::new();
        for (j, &sku) in self.skus.iter().enumerate() {
            let mut lines = inst
                .lines
                .iter()
                .enumerate()
                .filter(|(_, l)| l.sku == sku)
                .map(|(l, line)| (l, line.quantity))
                .peekable();
            let mut line_left = lines.peek().map_or(0, |l| l.1);
            for &(p, _, q) in self.amounts(positions).iter().filter(|a| a.1 == j) {
                let mut give = q;
                while give > 0 {
                    let Some(&(l, _)) = lines.peek() else { break };
                    let take = give.min(line_left);
                    units.push((self.node[p], l, take));
                    give -= take;
                    line_left -= take;
                    if line_left == 0 {
                        lines.next();
                        line_left = lines.peek().map_or(0, |l| l.1);
                    }
                }
            }
        }
        units.sort_unstable();
        units
    }

    /// The most the nodes at `positions` save shipping the order when a node's capacity binds,
    /// with what each ships of each sku: a transportation problem (skus to nodes, each node at
    /// most its capacity), solved exactly by successive most-saving augmenting paths, which
    /// stop when no path saves anything.
    fn transport(&self, positions: &[usize]) -> (f64, Vec<(usize, usize, u64)>) {
        let k = self.k();
        let m = positions.len();
        // vertices: 0 the source, 1..=k the skus, k+1..=k+m the nodes, k+m+1 the sink
        let sink = k + m + 1;
        let mut net = Flow::new(sink + 1);
        for (j, &d) in self.demand.iter().enumerate() {
            net.arc(0, 1 + j, d, 0.0);
        }
        let mut shipped = Vec::new();
        for (a, &p) in positions.iter().enumerate() {
            for j in 0..k {
                let (give, save) = (self.give[p * k + j], self.save[p * k + j]);
                if give > 0 && save > 0.0 {
                    shipped.push((p, j, net.arc(1 + j, 1 + k + a, give, -save)));
                }
            }
            let cap = self.binds[p].unwrap_or(u64::MAX);
            net.arc(1 + k + a, sink, cap, 0.0);
        }
        let cost = net.cheapest(0, sink);
        let amounts = shipped
            .into_iter()
            .map(|(p, j, arc)| (p, j, net.flow(arc)))
            .filter(|a| a.2 > 0)
            .collect();
        (-cost, amounts)
    }
}

/// A small flow network for [`Sets::transport`].
struct Flow {
    /// Per arc: head, residual capacity, cost; an arc and its reverse are 2i and 2i + 1.
    arcs: Vec<(usize, u64, f64)>,
    out: Vec<Vec<usize>>,
}

impl Flow {
    fn new(vertices: usize) -> Self {
        Self {
            arcs: Vec::new(),
            out: vec![Vec::new(); vertices],
        }
    }

    /// Adds an arc; returns its index.
    fn arc(&mut self, from: usize, to: usize, cap: u64, cost: f64) -> usize {
        let i = self.arcs.len();
        self.arcs.push((to, cap, cost));
        self.arcs.push((from, 0, -cost));
        self.out[from].push(i);
        self.out[to].push(i + 1);
        i
    }

    /// Units through arc `i`: its reverse's residual capacity.
    fn flow(&self, i: usize) -> u64 {
        self.arcs[i + 1].1
    }

    /// Sends flow along cheapest paths while one costs less than nothing; the total cost.
    fn cheapest(&mut self, source: usize, sink: usize) -> f64 {
        let n = self.out.len();
        let mut total = 0.0;
        loop {
            // Bellman-Ford: the residual graph has no negative cycle
            let mut dist = vec![f64::INFINITY; n];
            let mut via = vec![usize::MAX; n];
            dist[source] = 0.0;
            for _ in 0..n {
                let mut changed = false;
                for v in 0..n {
                    if dist[v].is_infinite() {
                        continue;
                    }
                    for &i in &self.out[v] {
                        let (to, cap, cost) = self.arcs[i];
                        if cap > 0 && dist[v] + cost < dist[to] - 1e-12 {
                            dist[to] = dist[v] + cost;
                            via[to] = i;
                            changed = true;
                        }
                    }
                }
                if !changed {
                    break;
                }
            }
            if dist[sink] >= -1e-12 {
                return total;
            }
            let mut push = u64::MAX;
            let mut v = sink;
            while v != source {
                let i = via[v];
                push = push.min(self.arcs[i].1);
                v = self.arcs[i ^ 1].0;
            }
            v = sink;
            while v != source {
                let i = via[v];
                self.arcs[i].1 -= push;
                self.arcs[i ^ 1].1 += push;
                v = self.arcs[i ^ 1].0;
            }
            total += dist[sink] * push as f64;
        }
    }
}

/// The depth-first walk over node sets, in position order.
struct Walk<'a> {
    sets: &'a Sets,
    best_cost: f64,
    best: Vec<usize>,
    /// Positions of the nodes in the current set.
    chosen: Vec<usize>,
    /// For the current first node: the later nodes worth pairing with it.
    row: Vec<Entry>,
    evaluated: u32,
    deadline: Instant,
    stopped: bool,
}

/// A later node in the row of a first node.
#[derive(Clone, Copy)]
struct Entry {
    node: usize,
    /// The cost of the first node and this one.
    pair: f64,
    /// What this one saves beside the first node alone, at least zero.
    saves: f64,
    /// The most any entry from this one on saves.
    most: f64,
}

impl Walk<'_> {
    fn walk(&mut self) {
        let s = self.sets;
        let n = s.node.len();
        let base = s.penalty * s.demand.iter().sum::<u64>() as f64 - s.split;
        for first in 0..n {
            // coverage: the nodes after it save no more than the next ones in order
            let others: f64 = s.reduced[first + 1..].iter().take(s.max - 1).sum();
            if base - s.reduced[first] - others >= self.best_cost - 1e-9 {
                return;
            }
            if s.bound[first] >= self.best_cost - 1e-9 || self.spent() {
                continue;
            }
            self.chosen.push(first);
            let alone = self.cost();
            self.offer(alone, &[first]);
            if s.max > 1 {
                self.pairs(first, alone);
                self.extend(alone, 0, s.max - 1);
            }
            self.chosen.pop();
            if self.stopped {
                return;
            }
        }
    }

    /// The row of `first`: every later node a set of at most M with both could be worth it.
    fn pairs(&mut self, first: usize, alone: f64) {
        let s = self.sets;
        self.row.clear();
        // the most any other later node saves alone, for the M − 2 others a set may have
        let others = s.reduced.get(first + 1).copied().unwrap_or(0.0) * (s.max - 2) as f64;
        for next in first + 1..s.node.len() {
            if alone - others - s.reduced[next] >= self.best_cost - 1e-9 {
                break;
            }
            if s.bound[next] >= self.best_cost - 1e-9 || self.spent() {
                continue;
            }
            self.chosen.push(next);
            let pair = self.cost();
            self.chosen.pop();
            self.offer(pair, &[first, next]);
            let saves = (alone - pair).max(0.0);
            self.row.push(Entry {
                node: next,
                pair,
                saves,
                most: saves,
            });
        }
        let mut most: f64 = 0.0;
        for entry in self.row.iter_mut().rev() {
            most = most.max(entry.saves);
            entry.most = most;
        }
    }

    /// Adds up to `room` nodes of the row from entry `from` on to the current set, which
    /// costs `cost` and starts with the row's first node. A node added saves at most what it
    /// saves beside the first node alone.
    fn extend(&mut self, cost: f64, from: usize, room: usize) {
        let s = self.sets;
        for at in from..self.row.len() {
            let Entry {
                node,
                pair,
                saves,
                most,
            } = self.row[at];
            let later = self.row.get(at + 1).map_or(0.0, |e| e.most) * (room - 1) as f64;
            if cost - most - later >= self.best_cost - 1e-9 {
                // nothing from here on saves enough
                return;
            }
            if cost - saves - later >= self.best_cost - 1e-9
                || s.bound[node] >= self.best_cost - 1e-9
                || self.spent()
            {
                continue;
            }
            self.chosen.push(node);
            let with = if self.chosen.len() == 2 {
                pair
            } else {
                let with = self.cost();
                let chosen = std::mem::take(&mut self.chosen);
                self.offer(with, &chosen);
                self.chosen = chosen;
                with
            };
            if room > 1 && with - later < self.best_cost - 1e-9 {
                self.extend(with, at + 1, room - 1);
            }
            self.chosen.pop();
            if self.stopped {
                return;
            }
        }
    }

    /// Whether the budget is spent; looks at the clock every [`CLOCK_EVERY`] sets.
    fn spent(&mut self) -> bool {
        self.evaluated += 1;
        if self.evaluated % CLOCK_EVERY == 1 && Instant::now() >= self.deadline {
            self.stopped = true;
        }
        self.stopped
    }

    fn offer(&mut self, cost: f64, positions: &[usize]) {
        if cost < self.best_cost - 1e-9 {
            self.best_cost = cost;
            self.best = positions.to_vec();
        }
    }

    /// The cost of the current set: parcels, splits, and each sku from its cheapest nodes
    /// first, the rest unfilled.
    fn cost(&self) -> f64 {
        let s = self.sets;
        let k = s.k();
        let mut cost = self.chosen.iter().map(|&p| s.fixed[p]).sum::<f64>()
            + self.chosen.len().saturating_sub(1) as f64 * s.split;
        if self.chosen.iter().any(|&p| s.binds[p].is_some()) {
            let all: u64 = s.demand.iter().sum();
            return cost + s.penalty * all as f64 - s.transport(&self.chosen).0;
        }
        let mut offers: [(f64, u64); MAX_SET] = [(0.0, 0); MAX_SET];
        for (j, &d) in s.demand.iter().enumerate() {
            let mut n = 0;
            for &p in &self.chosen {
                let (give, save) = (s.give[p * k + j], s.save[p * k + j]);
                if give > 0 && save > 0.0 {
                    offers[n] = (save, give);
                    n += 1;
                }
            }
            offers[..n].sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut left = d;
            cost += s.penalty * d as f64;
            for &(save, give) in &offers[..n] {
                let take = give.min(left);
                cost -= save * take as f64;
                left -= take;
            }
        }
        cost
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::sourcing::instance::{Cand, Line, brute_force, crowded};
    use crate::sourcing::optimal::{Backend, greedy, mip};

    /// A deadline the searches here never need: each finishes, proven, long before it, so a
    /// slow or busy machine cannot make a test fail by the clock.
    const BUDGET: Duration = Duration::from_secs(600);

    fn round(x: f64) -> f64 {
        (x * 100.0).round() / 100.0
    }

    /// Instances of `n` candidates and `lines` lines over `skus` skus; a candidate's capacity
    /// binds one time in three.
    fn instances(
        n: usize,
        lines: usize,
        skus: usize,
        ats: u64,
    ) -> impl proptest::strategy::Strategy<Value = Instance> {
        let cand = (
            0.0..12.0f64,
            0.0..3.0f64,
            proptest::collection::vec(0u64..=ats, skus),
            prop_oneof![
                Just(Vec::new()),
                proptest::collection::vec(0.0..4.0f64, skus)
            ],
            prop_oneof![2 => Just(None), 1 => (1u64..=ats).prop_map(Some)],
        )
            .prop_map(|(fixed, unit, ats, kept, binds)| Cand {
                fixed: round(fixed),
                unit: round(unit),
                capacity: binds.unwrap_or(ats.iter().sum::<u64>() + 1),
                ats,
                kept: kept.into_iter().map(round).collect(),
            });
        (
            proptest::collection::vec(cand, 1..=n),
            proptest::collection::vec((0..skus, 1u64..=3), 1..=lines),
            1usize..=3,
            0.0..3.0f64,
            prop_oneof![Just(None), (0.0..15.0f64).prop_map(Some)],
            prop_oneof![4 => Just(false), 1 => Just(true)],
        )
            .prop_map(
                move |(cands, lines, max_shipments, split, unfilled, ship_complete)| Instance {
                    skus,
                    cands,
                    lines: lines
                        .into_iter()
                        .map(|(sku, quantity)| Line {
                            sku,
                            quantity,
                            kit: None,
                        })
                        .collect(),
                    kits: vec![],
                    max_shipments,
                    split_penalty: round(split),
                    unfilled_penalty: unfilled.map(round),
                    ship_complete,
                },
            )
    }

    fn searched(inst: &Instance) -> Found {
        search(inst, Instant::now() + BUDGET, || greedy(inst)).expect("no kits")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn the_search_matches_brute_force(inst in instances(3, 2, 2, 3)) {
            let (units, proven) = searched(&inst);
            prop_assert!(proven);
            match brute_force(&inst) {
                Some((best, _)) => {
                    prop_assert!(inst.check(&units).is_ok(), "{:?}: {units:?}", inst.check(&units));
                    let cost = inst.cost(&units);
                    prop_assert!((cost - best).abs() < 1e-6, "search {cost}, brute force {best}");
                }
                None => prop_assert!(inst.check(&units).is_err(), "brute force found no plan"),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(120))]

        /// Too large to enumerate: the search and the MIP agree.
        #[test]
        fn the_search_matches_the_mip(inst in instances(30, 8, 5, 6)) {
            let (units, proven) = searched(&inst);
            prop_assert!(proven);
            let by_mip = match mip(&inst, Backend::Microlp, Instant::now() + BUDGET) {
                Ok((units, proven)) => { prop_assert!(proven); Some(units) }
                Err(_) => None,
            };
            match by_mip.filter(|u| inst.check(u).is_ok()) {
                Some(best) => {
                    let best = inst.cost(&best);
                    prop_assert!(inst.check(&units).is_ok(), "{:?}", inst.check(&units));
                    let cost = inst.cost(&units);
                    prop_assert!((cost - best).abs() < 1e-6, "search {cost}, mip {best}");
                }
                None => prop_assert!(units.is_empty(), "the MIP found no plan"),
            }
        }
    }

    #[test]
    fn binding_capacity_is_searched_and_kits_go_to_the_mip() {
        let cand = |unit, capacity| Cand {
            fixed: 1.0,
            unit,
            ats: vec![5, 5],
            capacity,
            kept: Vec::new(),
        };
        let line = |sku, kit| Line {
            sku,
            quantity: 3,
            kit,
        };
        // the cheap node may ship 4 of the 6 units: the dear one ships the other 2
        let mut inst = Instance {
            skus: 2,
            cands: vec![cand(1.0, 4), cand(2.0, 10)],
            lines: vec![line(0, None), line(1, None)],
            kits: vec![],
            max_shipments: 2,
            split_penalty: 1.0,
            unfilled_penalty: Some(9.0),
            ship_complete: false,
        };
        let at = Instant::now() + BUDGET;
        let (units, proven) = search(&inst, at, || None).unwrap();
        assert!(proven);
        assert_eq!(inst.cost(&units), 2.0 + 1.0 + 4.0 * 1.0 + 2.0 * 2.0);
        assert_eq!(
            units.iter().filter(|u| u.0 == 0).map(|u| u.2).sum::<u64>(),
            4
        );
        inst.lines = vec![line(0, Some(0)), line(1, Some(0))];
        inst.kits = vec![vec![0, 1]];
        assert!(search(&inst, at, || None).is_none());
    }

    #[test]
    fn a_spent_budget_returns_the_best_so_far_unproven() {
        let inst = crowded(400, 3);
        let incumbent = greedy(&inst).unwrap();
        let (units, proven) = search(&inst, Instant::now(), || Some(incumbent.clone())).unwrap();
        assert!(!proven);
        assert!(inst.check(&units).is_ok());
        assert!(inst.cost(&units) <= inst.cost(&incumbent) + 1e-9);
        let (units, proven) = search(&inst, Instant::now() + BUDGET, || None).unwrap();
        assert!(proven);
        assert!(inst.cost(&units) <= inst.cost(&incumbent) + 1e-9);
    }
}
