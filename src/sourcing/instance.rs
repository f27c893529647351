//! One sourcing decision as numbers: candidates with their costs, stock and capacity, order
//! lines with their kits, and the segment's limits. This is the model of
//! `solver-models/sourcing.md`: [`Instance::check`] is its constraints, [`Instance::cost`] its
//! objective, and [`Instance::to_lp`] writes it in the CPLEX LP format any MIP solver reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// A node that may ship some of the order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cand {
    /// Paid once if the node ships anything: parcel, distance per parcel, lateness.
    pub fixed: f64,
    /// Paid per unit shipped: handling, distance per unit, transfer.
    pub unit: f64,
    /// Units of each sku it may give.
    pub ats: Vec<u64>,
    /// Units it may still ship today.
    pub capacity: u64,
    /// What a unit of each sku taken from here costs the orders still to come (look-ahead's
    /// opportunity cost, weighted), paid per unit on top of `unit`; empty for none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<f64>,
}

impl Cand {
    /// Paid per unit of `sku` shipped: the unit cost and the opportunity cost of the unit.
    pub fn unit_of(&self, sku: usize) -> f64 {
        self.unit + self.kept.get(sku).copied().unwrap_or(0.0)
    }

    /// The opportunity cost of `q` units of `sku` from here.
    pub fn kept_of(&self, sku: usize, q: u64) -> f64 {
        self.kept.get(sku).copied().unwrap_or(0.0) * q as f64
    }
}

/// One order line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub sku: usize,
    pub quantity: u64,
    /// Index into [`Instance::kits`] when the line belongs to a kit.
    pub kit: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub skus: usize,
    pub cands: Vec<Cand>,
    pub lines: Vec<Line>,
    /// Line indexes of each kit.
    pub kits: Vec<Vec<usize>>,
    pub max_shipments: usize,
    pub split_penalty: f64,
    /// Penalty per unfilled unit where unfilled units are allowed; `None` where they are not.
    pub unfilled_penalty: Option<f64>,
    /// One shipment with every unit, or (where unfilled units are allowed) nothing at all.
    pub ship_complete: bool,
}

/// Units of a line from a candidate: (candidate, line, units), units above zero.
pub type Units = Vec<(usize, usize, u64)>;

impl Instance {
    pub fn total_units(&self) -> u64 {
        self.lines.iter().map(|l| l.quantity).sum()
    }

    /// Units each sku is asked for.
    pub fn demand_by_sku(&self) -> Vec<u64> {
        let mut d = vec![0; self.skus];
        for l in &self.lines {
            d[l.sku] += l.quantity;
        }
        d
    }

    /// The sentence saying which rule `units` breaks, if any.
    pub fn check(&self, units: &Units) -> Result<(), String> {
        self.check_with(units, self.unfilled_penalty.is_some())
    }

    /// As [`Instance::check`], but accepting unfilled units whatever the segment's policy on
    /// them: a plan that leaves some is the segment's to refuse, not a broken rule.
    pub fn check_all_but_unfilled(&self, units: &Units) -> Result<(), String> {
        self.check_with(units, true)
    }

    fn check_with(&self, units: &Units, unfilled_allowed: bool) -> Result<(), String> {
        let mut per_line = vec![0u64; self.lines.len()];
        let mut per_cand_sku: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        let mut per_cand = vec![0u64; self.cands.len()];
        let mut line_cands: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); self.lines.len()];
        for &(c, l, q) in units {
            if c >= self.cands.len() || l >= self.lines.len() || q == 0 {
                return Err(format!("assignment ({c}, {l}, {q}) is out of range"));
            }
            per_line[l] += q;
            *per_cand_sku.entry((c, self.lines[l].sku)).or_default() += q;
            per_cand[c] += q;
            line_cands[l].insert(c);
        }
        for (l, line) in self.lines.iter().enumerate() {
            if per_line[l] > line.quantity {
                return Err(format!(
                    "line {l} gets {} of {}",
                    per_line[l], line.quantity
                ));
            }
        }
        for (&(c, s), &q) in &per_cand_sku {
            if q > self.cands[c].ats[s] {
                return Err(format!(
                    "{q} units of sku {s} from candidate {c} exceed its ATS {}",
                    self.cands[c].ats[s]
                ));
            }
        }
        for (c, &q) in per_cand.iter().enumerate() {
            if q > self.cands[c].capacity {
                return Err(format!(
                    "{q} units from candidate {c} exceed its capacity {}",
                    self.cands[c].capacity
                ));
            }
        }
        let used = per_cand.iter().filter(|&&q| q > 0).count();
        let max = if self.ship_complete {
            1
        } else {
            self.max_shipments
        };
        if used > max {
            return Err(format!("{used} shipments, above the maximum of {max}"));
        }
        for (k, kit) in self.kits.iter().enumerate() {
            let cands: BTreeSet<usize> = kit
                .iter()
                .flat_map(|&l| line_cands[l].iter().copied())
                .collect();
            let complete = kit.iter().all(|&l| per_line[l] == self.lines[l].quantity);
            let empty = kit.iter().all(|&l| per_line[l] == 0);
            if !(empty || (complete && cands.len() == 1)) {
                return Err(format!("kit {k} does not ship whole from one node"));
            }
        }
        let unfilled: u64 = self.total_units() - per_line.iter().sum::<u64>();
        if unfilled > 0 && !unfilled_allowed {
            return Err(format!(
                "{unfilled} units unfilled where the segment allows none"
            ));
        }
        if self.ship_complete && used > 0 && unfilled > 0 {
            return Err("a ship-complete order ships whole or not at all".into());
        }
        Ok(())
    }

    /// The objective: unit costs (with the opportunity cost of each unit, where look-ahead
    /// priced it), fixed costs of the candidates used, the split penalty per shipment beyond
    /// the first, and the penalty per unfilled unit.
    pub fn cost(&self, units: &Units) -> f64 {
        let mut used = BTreeSet::new();
        let mut cost = 0.0;
        let mut shipped = 0;
        for &(c, l, q) in units {
            used.insert(c);
            cost += self.cands[c].unit_of(self.lines[l].sku) * q as f64;
            shipped += q;
        }
        cost += used.iter().map(|&c| self.cands[c].fixed).sum::<f64>();
        cost += used.len().saturating_sub(1) as f64 * self.split_penalty;
        let unfilled = self.total_units() - shipped;
        cost + unfilled as f64 * self.unfilled_penalty.unwrap_or(0.0)
    }

    /// The model written out in CPLEX LP format: exactly the problem the optimiser solves,
    /// so any MIP solver can check our optimum.
    ///
    /// Variables: `x_c_l` units of line l from candidate c (lines outside kits), `z_c_k`
    /// kit k ships from c, `y_c` c ships a parcel, `u_l` unfilled units of line l, `w_k` kit
    /// k unfilled, `s` at least one parcel ships, `one` the constant 1.
    pub fn to_lp(&self, title: &str) -> String {
        let m = self.mip_shape();
        let mut out = String::new();
        let _ = writeln!(out, "\\ {title}");
        let _ = writeln!(out, "Minimize");
        let obj = self.objective(&m);
        let _ = writeln!(out, " obj: {}", join_terms(&obj));
        let _ = writeln!(out, "Subject To");
        for (name, terms, op, rhs) in m.rows(self) {
            let _ = writeln!(out, " {name}: {} {op} {rhs}", join_terms(&terms));
        }
        let _ = writeln!(out, "Bounds");
        for (&(c, l), &ub) in &m.x {
            let _ = writeln!(out, " 0 <= x_{c}_{l} <= {ub}");
        }
        for &l in &m.u {
            let _ = writeln!(out, " 0 <= u_{l} <= {}", self.lines[l].quantity);
        }
        let _ = writeln!(out, " one = 1");
        let _ = writeln!(out, "General");
        let generals: Vec<String> =
            m.x.keys()
                .map(|&(c, l)| Var::X(c, l))
                .chain(m.u.iter().map(|&l| Var::U(l)))
                .map(|v| v.to_string())
                .collect();
        for chunk in generals.chunks(8) {
            let _ = writeln!(out, " {}", chunk.join(" "));
        }
        let _ = writeln!(out, "Binary");
        let binaries: Vec<String> =
            m.z.iter()
                .map(|&(c, k)| Var::Z(c, k))
                .chain(m.y.iter().map(|&c| Var::Y(c)))
                .chain(m.w.iter().map(|&k| Var::W(k)))
                .chain(std::iter::once(Var::S))
                .map(|v| v.to_string())
                .collect();
        for chunk in binaries.chunks(8) {
            let _ = writeln!(out, " {}", chunk.join(" "));
        }
        let _ = writeln!(out, "End");
        out
    }

    /// The objective's terms. Each parcel pays its fixed cost plus the split penalty, and `s`
    /// (some parcel ships) takes one split penalty back, so the first parcel pays none. A
    /// ship-complete order that may go unfilled pays the penalty of every unit unless it ships.
    pub fn objective(&self, m: &MipShape) -> Vec<(f64, Var)> {
        let kit_units =
            |k: usize| -> u64 { self.kits[k].iter().map(|&l| self.lines[l].quantity).sum() };
        let mut obj = Vec::with_capacity(m.x.len() + m.z.len() + m.y.len() + 4);
        for &(c, l) in m.x.keys() {
            obj.push((self.cands[c].unit_of(self.lines[l].sku), Var::X(c, l)));
        }
        for &(c, k) in &m.z {
            let per_kit: f64 = self.kits[k]
                .iter()
                .map(|&l| self.cands[c].unit_of(self.lines[l].sku) * self.lines[l].quantity as f64)
                .sum();
            obj.push((per_kit, Var::Z(c, k)));
        }
        for &c in &m.y {
            obj.push((self.cands[c].fixed + self.split_penalty, Var::Y(c)));
        }
        if let Some(p) = self.unfilled_penalty {
            for &l in &m.u {
                obj.push((p, Var::U(l)));
            }
            for &k in &m.w {
                obj.push((p * kit_units(k) as f64, Var::W(k)));
            }
        }
        let mut s_coef = -self.split_penalty;
        if let (true, Some(p)) = (self.ship_complete, self.unfilled_penalty) {
            let all = p * self.total_units() as f64;
            obj.push((all, Var::One));
            s_coef -= all;
        }
        obj.push((s_coef, Var::S));
        obj
    }

    /// Which variables the model has: only those a candidate's stock and capacity allow.
    pub fn mip_shape(&self) -> MipShape {
        let mut m = MipShape::default();
        let unfilled_ok = self.unfilled_penalty.is_some();
        for (l, line) in self.lines.iter().enumerate() {
            if line.kit.is_some() {
                continue;
            }
            for (c, cand) in self.cands.iter().enumerate() {
                let ub = line.quantity.min(cand.ats[line.sku]).min(cand.capacity);
                if ub > 0 {
                    m.x.insert((c, l), ub);
                }
            }
            if unfilled_ok && !self.ship_complete {
                m.u.push(l);
            }
        }
        for (k, kit) in self.kits.iter().enumerate() {
            let mut need = vec![0u64; self.skus];
            for &l in kit {
                need[self.lines[l].sku] += self.lines[l].quantity;
            }
            let units: u64 = need.iter().sum();
            for (c, cand) in self.cands.iter().enumerate() {
                if cand.capacity >= units && need.iter().zip(&cand.ats).all(|(n, a)| n <= a) {
                    m.z.push((c, k));
                }
            }
            if unfilled_ok && !self.ship_complete {
                m.w.push(k);
            }
        }
        let mut y: BTreeSet<usize> = m.x.keys().map(|&(c, _)| c).collect();
        y.extend(m.z.iter().map(|&(c, _)| c));
        m.y = y.into_iter().collect();
        m
    }
}

/// A variable of the MIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Var {
    /// Units of line l from candidate c.
    X(usize, usize),
    /// Kit k ships from candidate c.
    Z(usize, usize),
    /// Candidate c ships a parcel.
    Y(usize),
    /// Unfilled units of line l.
    U(usize),
    /// Kit k unfilled.
    W(usize),
    /// At least one parcel ships.
    S,
    /// The constant 1.
    One,
}

impl std::fmt::Display for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Var::X(c, l) => write!(f, "x_{c}_{l}"),
            Var::Z(c, k) => write!(f, "z_{c}_{k}"),
            Var::Y(c) => write!(f, "y_{c}"),
            Var::U(l) => write!(f, "u_{l}"),
            Var::W(k) => write!(f, "w_{k}"),
            Var::S => f.write_str("s"),
            Var::One => f.write_str("one"),
        }
    }
}

/// The variables of the MIP for one instance.
#[derive(Debug, Clone, Default)]
pub struct MipShape {
    /// (candidate, line) to the upper bound of x.
    pub x: BTreeMap<(usize, usize), u64>,
    pub z: Vec<(usize, usize)>,
    pub y: Vec<usize>,
    pub u: Vec<usize>,
    pub w: Vec<usize>,
}

/// A constraint: name, terms, operator (`<=`, `=`, `>=`), right-hand side.
pub type Row = (String, Vec<(f64, Var)>, &'static str, f64);

impl MipShape {
    /// Every constraint as (name, terms, operator, right-hand side).
    pub fn rows(&self, inst: &Instance) -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::new();
        let whole_or_nothing = inst.ship_complete && inst.unfilled_penalty.is_some();
        let kit_units =
            |k: usize| -> u64 { inst.kits[k].iter().map(|&l| inst.lines[l].quantity).sum() };
        // the variables of each line and each candidate, so no row scans them all
        let mut x_of_line: Vec<Vec<usize>> = vec![Vec::new(); inst.lines.len()];
        for &(c, l) in self.x.keys() {
            x_of_line[l].push(c);
        }
        let mut z_of_kit: Vec<Vec<usize>> = vec![Vec::new(); inst.kits.len()];
        let mut z_of_cand: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &(c, k) in &self.z {
            z_of_kit[k].push(c);
            z_of_cand.entry(c).or_default().push(k);
        }
        // demand: every unit is shipped or unfilled
        for (l, line) in inst.lines.iter().enumerate() {
            if line.kit.is_some() {
                continue;
            }
            let mut terms: Vec<(f64, Var)> =
                x_of_line[l].iter().map(|&c| (1.0, Var::X(c, l))).collect();
            if self.u.contains(&l) {
                terms.push((1.0, Var::U(l)));
            }
            if whole_or_nothing {
                // all of it when anything ships
                terms.push((-(line.quantity as f64), Var::S));
                rows.push((format!("demand_{l}"), terms, "=", 0.0));
            } else {
                rows.push((format!("demand_{l}"), terms, "=", line.quantity as f64));
            }
        }
        for (k, cands) in z_of_kit.iter().enumerate() {
            let mut terms: Vec<(f64, Var)> = cands.iter().map(|&c| (1.0, Var::Z(c, k))).collect();
            if self.w.contains(&k) {
                terms.push((1.0, Var::W(k)));
            }
            if whole_or_nothing {
                terms.push((-1.0, Var::S));
                rows.push((format!("kit_{k}"), terms, "=", 0.0));
            } else {
                rows.push((format!("kit_{k}"), terms, "=", 1.0));
            }
        }
        let no_kits = Vec::new();
        for &c in &self.y {
            let cand = &inst.cands[c];
            let xs: Vec<(usize, u64)> = self
                .x
                .range((c, 0)..(c + 1, 0))
                .map(|(&(_, l), &ub)| (l, ub))
                .collect();
            let kits = z_of_cand.get(&c).unwrap_or(&no_kits);
            // stock: the lines of one sku share a candidate's ATS
            let mut per_sku: BTreeMap<usize, Vec<(f64, Var)>> = BTreeMap::new();
            for &(l, _) in &xs {
                per_sku
                    .entry(inst.lines[l].sku)
                    .or_default()
                    .push((1.0, Var::X(c, l)));
            }
            for &k in kits {
                let mut of_sku: BTreeMap<usize, u64> = BTreeMap::new();
                for &l in &inst.kits[k] {
                    *of_sku.entry(inst.lines[l].sku).or_default() += inst.lines[l].quantity;
                }
                for (sku, q) in of_sku {
                    per_sku
                        .entry(sku)
                        .or_default()
                        .push((q as f64, Var::Z(c, k)));
                }
            }
            for (sku, terms) in per_sku {
                if terms.len() > 1 {
                    rows.push((
                        format!("stock_{c}_{sku}"),
                        terms,
                        "<=",
                        cand.ats[sku] as f64,
                    ));
                }
            }
            // capacity, and linking: a candidate ships only if its parcel is paid for
            let mut units = Vec::with_capacity(xs.len() + kits.len());
            let mut max_units = 0.0;
            for &(l, ub) in &xs {
                units.push((1.0, Var::X(c, l)));
                max_units += ub as f64;
                rows.push((
                    format!("link_{c}_{l}"),
                    vec![(1.0, Var::X(c, l)), (-(ub as f64), Var::Y(c))],
                    "<=",
                    0.0,
                ));
            }
            for &k in kits {
                let q = kit_units(k) as f64;
                units.push((q, Var::Z(c, k)));
                max_units += q;
                rows.push((
                    format!("linkkit_{c}_{k}"),
                    vec![(1.0, Var::Z(c, k)), (-1.0, Var::Y(c))],
                    "<=",
                    0.0,
                ));
            }
            if max_units > cand.capacity as f64 {
                rows.push((format!("capacity_{c}"), units, "<=", cand.capacity as f64));
            }
            // s is 1 only when something ships
            rows.push((
                format!("any_{c}"),
                vec![(1.0, Var::Y(c)), (-1.0, Var::S)],
                "<=",
                0.0,
            ));
        }
        let max = if inst.ship_complete {
            1
        } else {
            inst.max_shipments
        };
        let parcels: Vec<(f64, Var)> = self.y.iter().map(|&c| (1.0, Var::Y(c))).collect();
        let mut any = parcels.clone();
        any.push((-1.0, Var::S));
        rows.push(("some_parcel".into(), any, ">=", 0.0));
        if self.y.len() > max {
            rows.push(("max_shipments".into(), parcels, "<=", max as f64));
        }
        // `one` carries nothing but keeps the constant-free objective readers expect
        rows.push(("constant".into(), vec![(1.0, Var::One)], "=", 1.0));
        rows
    }
}

fn join_terms(terms: &[(f64, Var)]) -> String {
    if terms.is_empty() {
        return "0 one".into();
    }
    let mut out = String::new();
    for (i, (coef, name)) in terms.iter().enumerate() {
        let coef = (coef * 1e9).round() / 1e9;
        if i == 0 {
            let _ = write!(out, "{coef} {name}");
        } else if coef < 0.0 {
            let _ = write!(out, " - {} {name}", -coef);
        } else {
            let _ = write!(out, " + {coef} {name}");
        }
    }
    out
}

/// `n` candidates of six skus, a few units each, and a 12-line order that needs several of
/// them: for tests of a solve that runs out of time.
#[cfg(test)]
pub fn crowded(n: usize, max_shipments: usize) -> Instance {
    Instance {
        skus: 6,
        cands: (0..n)
            .map(|i| Cand {
                fixed: 3.0 + (i % 7) as f64 * 0.37,
                unit: 0.5 + (i % 5) as f64 * 0.11,
                ats: (0..6).map(|s| ((i * 7 + s * 3) % 5) as u64).collect(),
                capacity: 40,
                kept: Vec::new(),
            })
            .collect(),
        lines: (0..12)
            .map(|l| Line {
                sku: l % 6,
                quantity: 2 + (l % 3) as u64,
                kit: None,
            })
            .collect(),
        kits: vec![],
        max_shipments,
        split_penalty: 1.0,
        unfilled_penalty: Some(30.0),
        ship_complete: false,
    }
}

/// The least cost over every assignment, by enumeration: for tests on tiny instances.
#[cfg(test)]
pub fn brute_force(inst: &Instance) -> Option<(f64, Units)> {
    let mut slots: Vec<(usize, usize, u64)> = Vec::new();
    for (l, line) in inst.lines.iter().enumerate() {
        for (c, cand) in inst.cands.iter().enumerate() {
            let ub = line.quantity.min(cand.ats[line.sku]).min(cand.capacity);
            if ub > 0 {
                slots.push((c, l, ub));
            }
        }
    }
    let mut best: Option<(f64, Units)> = None;
    let mut current = vec![0u64; slots.len()];
    loop {
        let units: Units = slots
            .iter()
            .zip(&current)
            .filter(|(_, q)| **q > 0)
            .map(|(&(c, l, _), &q)| (c, l, q))
            .collect();
        if inst.check(&units).is_ok() {
            let cost = inst.cost(&units);
            if best.as_ref().is_none_or(|(b, _)| cost < *b - 1e-9) {
                best = Some((cost, units));
            }
        }
        // next assignment, odometer style
        let mut i = 0;
        loop {
            if i == slots.len() {
                return best;
            }
            if current[i] < slots[i].2 {
                current[i] += 1;
                break;
            }
            current[i] = 0;
            i += 1;
        }
    }
}
