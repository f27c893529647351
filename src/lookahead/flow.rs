//! The network LP of one sku as a transportation problem, solved exactly as a min-cost flow,
//! with the price of a unit of stock at each node read from the optimal flow's residual graph.
//!
//! Nodes supply their ATS; regions ask for their expected demand over the horizon; a unit of a
//! region's demand is served from a node at that node's cost to the region, or lost at the
//! lost-sale cost. Minimising the total, the price of a unit at a node is what the rest of the
//! horizon loses if one unit fewer is there: 0 where the node has units to spare, else the
//! cheapest way to make up for it (another node serving the region it would have served, or
//! the sale lost). That is the stock row's dual price of the LP, taken on the side of a unit
//! taken away, which is what an order taking the unit costs the orders still to come.

/// One sku's transportation problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Transport {
    /// Units at each node.
    pub supply: Vec<f64>,
    /// Expected units asked in each region.
    pub demand: Vec<f64>,
    /// Cost of a unit from node `i` to region `j`, `None` where the node may not serve it.
    pub cost: Vec<Vec<Option<f64>>>,
    /// Cost of a unit of demand no node serves.
    pub lost_sale: f64,
    /// The same for each region where they differ; empty for `lost_sale` everywhere.
    pub lost_sale_by_region: Vec<f64>,
}

/// The optimum: flows, cost, and the price of a unit at each node.
#[derive(Debug, Clone, PartialEq)]
pub struct Solved {
    /// Units from node `i` to region `j`.
    pub flow: Vec<Vec<f64>>,
    /// Units of each region's demand lost.
    pub lost: Vec<f64>,
    pub cost: f64,
    /// What one unit fewer at each node costs the optimum (0 where the node has some to spare).
    pub price: Vec<f64>,
}

const EPS: f64 = 1e-9;

struct Arc {
    to: usize,
    cap: f64,
    cost: f64,
}

/// A residual graph: arcs in pairs, each arc's reverse at `index ^ 1`.
struct Graph {
    arcs: Vec<Arc>,
    out: Vec<Vec<usize>>,
}

impl Graph {
    fn new(vertices: usize) -> Self {
        Self {
            arcs: Vec::new(),
            out: vec![Vec::new(); vertices],
        }
    }

    fn add(&mut self, from: usize, to: usize, cap: f64, cost: f64) -> usize {
        let id = self.arcs.len();
        self.arcs.push(Arc { to, cap, cost });
        self.arcs.push(Arc {
            to: from,
            cap: 0.0,
            cost: -cost,
        });
        self.out[from].push(id);
        self.out[to].push(id + 1);
        id
    }

    /// Shortest distances from `source` over arcs with capacity left, and the arc into each
    /// vertex on its path (queue-based Bellman-Ford: the residual graph has negative arcs, and
    /// no negative cycle at a min-cost flow).
    fn distances(&self, source: usize) -> (Vec<f64>, Vec<Option<usize>>) {
        let n = self.out.len();
        let mut dist = vec![f64::INFINITY; n];
        let mut via = vec![None; n];
        let mut queued = vec![false; n];
        let mut queue = std::collections::VecDeque::new();
        dist[source] = 0.0;
        queue.push_back(source);
        queued[source] = true;
        while let Some(u) = queue.pop_front() {
            queued[u] = false;
            for &a in &self.out[u] {
                let arc = &self.arcs[a];
                if arc.cap <= EPS {
                    continue;
                }
                let d = dist[u] + arc.cost;
                if d < dist[arc.to] - EPS {
                    dist[arc.to] = d;
                    via[arc.to] = Some(a);
                    if !queued[arc.to] {
                        queued[arc.to] = true;
                        queue.push_back(arc.to);
                    }
                }
            }
        }
        (dist, via)
    }
}

impl Transport {
    /// The least-cost way to meet the demand (by successive shortest paths), and the prices.
    pub fn solve(&self) -> Solved {
        let (n, m) = (self.supply.len(), self.demand.len());
        // vertices: the source, the nodes, the regions, the sink
        let (source, sink) = (0, n + m + 1);
        let node = |i: usize| 1 + i;
        let region = |j: usize| 1 + n + j;
        let mut g = Graph::new(n + m + 2);
        let supply_arcs: Vec<usize> = (0..n)
            .map(|i| g.add(source, node(i), self.supply[i].max(0.0), 0.0))
            .collect();
        let mut ship_arcs = vec![vec![None; m]; n];
        for (i, row) in self.cost.iter().enumerate() {
            for (j, c) in row.iter().enumerate() {
                if let Some(c) = c {
                    ship_arcs[i][j] = Some(g.add(node(i), region(j), f64::INFINITY, *c));
                }
            }
        }
        let lost_sale = |j: usize| {
            self.lost_sale_by_region
                .get(j)
                .copied()
                .unwrap_or(self.lost_sale)
        };
        let lost_arcs: Vec<usize> = (0..m)
            .map(|j| g.add(source, region(j), f64::INFINITY, lost_sale(j)))
            .collect();
        for j in 0..m {
            g.add(region(j), sink, self.demand[j].max(0.0), 0.0);
        }
        loop {
            let (dist, via) = g.distances(source);
            if !dist[sink].is_finite() {
                break;
            }
            let mut bottleneck = f64::INFINITY;
            let mut v = sink;
            while let Some(a) = via[v] {
                bottleneck = bottleneck.min(g.arcs[a].cap);
                v = g.arcs[a ^ 1].to;
            }
            if bottleneck <= EPS {
                break;
            }
            let mut v = sink;
            while let Some(a) = via[v] {
                g.arcs[a].cap -= bottleneck;
                g.arcs[a ^ 1].cap += bottleneck;
                v = g.arcs[a ^ 1].to;
            }
        }
        let used = |a: usize| g.arcs[a ^ 1].cap;
        let flow: Vec<Vec<f64>> = ship_arcs
            .iter()
            .map(|row| row.iter().map(|a| a.map_or(0.0, used)).collect())
            .collect();
        let lost: Vec<f64> = lost_arcs.iter().map(|&a| used(a)).collect();
        let cost = flow
            .iter()
            .zip(&self.cost)
            .flat_map(|(f, c)| f.iter().zip(c))
            .map(|(f, c)| f * c.unwrap_or(0.0))
            .sum::<f64>()
            + lost
                .iter()
                .enumerate()
                .map(|(j, l)| l * lost_sale(j))
                .sum::<f64>();
        // one unit fewer at a node whose stock is all used: push one unit from the source to
        // it the cheapest way left, and give up one of its own
        let (dist, _) = g.distances(source);
        let dearest = (0..m).map(lost_sale).fold(self.lost_sale, f64::max);
        let price = (0..n)
            .map(|i| {
                if g.arcs[supply_arcs[i]].cap > EPS || used(supply_arcs[i]) <= EPS {
                    0.0
                } else {
                    dist[node(i)].clamp(0.0, dearest)
                }
            })
            .collect();
        Solved {
            flow,
            lost,
            cost,
            price,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(supply: &[f64], demand: &[f64], cost: &[&[f64]], lost_sale: f64) -> Transport {
        Transport {
            supply: supply.to_vec(),
            demand: demand.to_vec(),
            cost: cost
                .iter()
                .map(|row| row.iter().map(|&c| (c >= 0.0).then_some(c)).collect())
                .collect(),
            lost_sale,
            lost_sale_by_region: Vec::new(),
        }
    }

    #[test]
    fn a_node_with_units_to_spare_has_no_price() {
        let s = t(&[10.0], &[3.0], &[&[2.0]], 50.0).solve();
        assert_eq!(s.price, [0.0]);
        assert!((s.cost - 6.0).abs() < 1e-9);
        assert_eq!(s.lost, [0.0]);
    }

    #[test]
    fn the_last_units_of_a_region_s_only_node_are_worth_the_sale_they_save() {
        // region 0 can be served only by node 0 (cost 2); 5 units expected, 3 there
        let s = t(&[3.0], &[5.0], &[&[2.0]], 50.0).solve();
        assert!((s.price[0] - 48.0).abs() < 1e-9, "{s:?}");
        assert!((s.lost[0] - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_unit_given_up_is_made_up_from_the_next_cheapest_node() {
        // two nodes serve one region, at 1 and 4; the demand takes all of node 0 and some of
        // node 1: a unit fewer at node 0 is a unit more from node 1
        let s = t(&[2.0, 10.0], &[5.0], &[&[1.0], &[4.0]], 50.0).solve();
        assert!((s.price[0] - 3.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.price[1], 0.0);
        assert!((s.cost - (2.0 + 12.0)).abs() < 1e-9);
    }

    #[test]
    fn a_node_nobody_else_can_replace_for_a_far_region_keeps_its_units_for_it() {
        // node 0 serves region 0 (near, 1) and region 1 (only it, 3); node 1 serves region 0
        // only (2). Region 1's demand needs node 0's units: they are worth the lost sale less
        // their cost, and region 0 is left to node 1
        let s = t(
            &[4.0, 10.0],
            &[4.0, 4.0],
            &[&[1.0, 3.0], &[2.0, -1.0]],
            20.0,
        )
        .solve();
        assert!((s.flow[0][1] - 4.0).abs() < 1e-9, "{s:?}");
        assert!((s.flow[1][0] - 4.0).abs() < 1e-9, "{s:?}");
        assert!((s.price[0] - 17.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.price[1], 0.0);
    }

    /// The price against what the optimum loses with one unit fewer, solved again.
    #[test]
    fn prices_are_what_the_optimum_loses_with_a_unit_fewer() {
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for _ in 0..200 {
            let (n, m) = (1 + next(5) as usize, 1 + next(4) as usize);
            let supply: Vec<f64> = (0..n).map(|_| next(6) as f64).collect();
            let demand: Vec<f64> = (0..m).map(|_| next(7) as f64).collect();
            let cost: Vec<Vec<Option<f64>>> = (0..n)
                .map(|_| {
                    (0..m)
                        .map(|_| (next(4) > 0).then(|| 1.0 + next(9) as f64))
                        .collect()
                })
                .collect();
            let p = Transport {
                supply,
                demand,
                cost,
                lost_sale: 12.0,
                lost_sale_by_region: if next(2) == 0 {
                    Vec::new()
                } else {
                    (0..m).map(|_| 6.0 + next(10) as f64).collect()
                },
            };
            let s = p.solve();
            for i in 0..n {
                if p.supply[i] < 1.0 {
                    continue;
                }
                let mut fewer = p.clone();
                fewer.supply[i] -= 1.0;
                let loss = fewer.solve().cost - s.cost;
                assert!(
                    (s.price[i] - loss).abs() < 1e-6,
                    "node {i}: price {} loss {loss} in {p:?}",
                    s.price[i]
                );
            }
        }
    }
}
