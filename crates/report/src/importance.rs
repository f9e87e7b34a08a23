//! Hyperparameter importance by fANOVA (Hutter, Hoos & Leyton-Brown, ICML 2014), as in Optuna's
//! `FanovaImportanceEvaluator`: fit a random forest to (parameters → objective), then decompose each
//! tree's prediction function over the search-space box into one-parameter marginals.
//!
//! A tree is piecewise constant on axis-aligned leaf boxes, so its marginals are exact sums over
//! leaves: the marginal of parameter `i` at `x` averages the tree over every other parameter
//! (uniformly over its range), and its variance divided by the tree's total variance is the share of
//! variance that `i` explains alone. Shares are averaged over trees. The same forest gives the
//! two-parameter marginal that the contour chart draws.
//!
//! Parameters live in *plot coordinates* (see [`crate::ParamAxis::plot_range`]): log10 for log
//! parameters, choice index for categoricals (each choice a unit-wide cell), so "uniform over the
//! range" means uniform on the scale the search space declared.

/// Trees in the forest; Optuna's default is 64 as well.
pub const N_TREES: usize = 64;
const MAX_DEPTH: usize = 64;

/// A fitted random forest over parameters in plot coordinates.
#[derive(Clone, Debug)]
pub struct Forest {
    trees: Vec<Tree>,
    bounds: Vec<(f64, f64)>,
}

#[derive(Clone, Debug)]
struct Tree {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug)]
enum Node {
    Leaf(f64),
    Split { feature: usize, threshold: f64, left: usize, right: usize },
}

/// A leaf's box (one `(low, high)` per feature) and its prediction.
struct Leaf {
    bounds: Vec<(f64, f64)>,
    value: f64,
}

impl Forest {
    /// Fits `N_TREES` bootstrap regression trees (all features considered at every split, no depth
    /// limit in practice, one sample per leaf at minimum: scikit-learn's defaults, which Optuna uses).
    /// `x[i]` are trial `i`'s features, `bounds[j]` the range of feature `j`.
    pub fn fit(x: &[Vec<f64>], y: &[f64], bounds: Vec<(f64, f64)>, seed: u64) -> Forest {
        assert_eq!(x.len(), y.len());
        let mut rng = SplitMix64(seed ^ 0x6e69_6768_7473_6869);
        let n = y.len();
        let trees = (0..N_TREES)
            .map(|_| {
                let mut idx: Vec<usize> = (0..n).map(|_| (rng.next() % n as u64) as usize).collect();
                let mut nodes = Vec::new();
                build(x, y, &mut idx, 0, &mut nodes);
                Tree { nodes }
            })
            .collect();
        Forest { trees, bounds }
    }

    /// Per feature, the fraction of the prediction variance it explains alone, averaged over the
    /// trees whose prediction is not constant. All zeros when every tree is constant.
    pub fn variance_fractions(&self) -> Vec<f64> {
        let d = self.bounds.len();
        let mut sum = vec![0.0; d];
        let mut counted = 0usize;
        for tree in &self.trees {
            if let Some(fractions) = tree_fractions(&tree.leaves(&self.bounds), &self.bounds) {
                for (s, f) in sum.iter_mut().zip(fractions) {
                    *s += f;
                }
                counted += 1;
            }
        }
        if counted > 0 {
            sum.iter_mut().for_each(|s| *s /= counted as f64);
        }
        sum
    }

    /// The forest's two-parameter marginal of features `a` (x) and `b` (y) at grid points `xs` × `ys`
    /// (each ascending): the predicted objective averaged over all other parameters. `z[iy][ix]`.
    pub fn pairwise_marginal(&self, a: usize, b: usize, xs: &[f64], ys: &[f64]) -> Vec<Vec<f64>> {
        let mut z = vec![vec![0.0; xs.len()]; ys.len()];
        for tree in &self.trees {
            for leaf in tree.leaves(&self.bounds) {
                let other: f64 = (0..self.bounds.len())
                    .filter(|&j| j != a && j != b)
                    .map(|j| fraction(&leaf.bounds[j], &self.bounds[j]))
                    .product();
                if other == 0.0 {
                    continue;
                }
                let (xa, xb) = cover(xs, leaf.bounds[a]);
                let (ya, yb) = cover(ys, leaf.bounds[b]);
                for row in &mut z[ya..yb] {
                    for cell in &mut row[xa..xb] {
                        *cell += leaf.value * other;
                    }
                }
            }
        }
        let trees = self.trees.len().max(1) as f64;
        z.iter_mut().flatten().for_each(|v| *v /= trees);
        z
    }
}

/// Indices `[start, end)` of the sorted `points` inside the half-open box side `[lo, hi)`.
fn cover(points: &[f64], (lo, hi): (f64, f64)) -> (usize, usize) {
    (points.partition_point(|&p| p < lo), points.partition_point(|&p| p < hi))
}

/// The share of feature `j`'s range that `side` covers (1 for a degenerate range).
fn fraction(side: &(f64, f64), range: &(f64, f64)) -> f64 {
    let width = range.1 - range.0;
    if width > 0.0 { (side.1 - side.0) / width } else { 1.0 }
}

impl Tree {
    fn leaves(&self, bounds: &[(f64, f64)]) -> Vec<Leaf> {
        let mut out = Vec::new();
        let mut stack = vec![(0usize, bounds.to_vec())];
        while let Some((node, bx)) = stack.pop() {
            match self.nodes[node] {
                Node::Leaf(value) => out.push(Leaf { bounds: bx, value }),
                Node::Split { feature, threshold, left, right } => {
                    let (lo, hi) = bx[feature];
                    let t = threshold.clamp(lo, hi);
                    let mut l = bx.clone();
                    l[feature] = (lo, t);
                    let mut r = bx;
                    r[feature] = (t, hi);
                    stack.push((left, l));
                    stack.push((right, r));
                }
            }
        }
        out
    }
}

/// fANOVA for one tree: per feature, Var(marginal_i) / Var(tree). `None` when the tree is constant.
fn tree_fractions(leaves: &[Leaf], bounds: &[(f64, f64)]) -> Option<Vec<f64>> {
    let fracs: Vec<Vec<f64>> =
        leaves.iter().map(|l| l.bounds.iter().zip(bounds).map(|(s, r)| fraction(s, r)).collect()).collect();
    let vols: Vec<f64> = fracs.iter().map(|f| f.iter().product()).collect();
    let mean: f64 = leaves.iter().zip(&vols).map(|(l, v)| l.value * v).sum();
    let total: f64 = leaves.iter().zip(&vols).map(|(l, v)| v * (l.value - mean).powi(2)).sum();
    if total <= 1e-300 * mean.abs().max(1.0) || !total.is_finite() {
        return None;
    }
    let mut out = Vec::with_capacity(bounds.len());
    for (i, range) in bounds.iter().enumerate() {
        // Cut the axis at every leaf edge; the marginal is constant between cuts.
        let mut cuts: Vec<f64> = leaves.iter().flat_map(|l| [l.bounds[i].0, l.bounds[i].1]).collect();
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        if cuts.len() < 2 {
            out.push(0.0);
            continue;
        }
        let mut marginal = vec![0.0; cuts.len() - 1];
        for ((leaf, f), vol) in leaves.iter().zip(&fracs).zip(&vols) {
            if f[i] == 0.0 {
                continue;
            }
            let other = vol / f[i];
            let a = cuts.partition_point(|&c| c < leaf.bounds[i].0);
            let b = cuts.partition_point(|&c| c < leaf.bounds[i].1);
            for m in &mut marginal[a..b] {
                *m += leaf.value * other;
            }
        }
        let width = range.1 - range.0;
        let var: f64 = marginal
            .iter()
            .enumerate()
            .map(|(k, m)| {
                let w = if width > 0.0 { (cuts[k + 1] - cuts[k]) / width } else { 1.0 };
                w * (m - mean).powi(2)
            })
            .sum();
        out.push((var / total).clamp(0.0, 1.0));
    }
    Some(out)
}

fn build(x: &[Vec<f64>], y: &[f64], idx: &mut [usize], depth: usize, nodes: &mut Vec<Node>) -> usize {
    let me = nodes.len();
    let n = idx.len();
    let mean = idx.iter().map(|&i| y[i]).sum::<f64>() / n as f64;
    nodes.push(Node::Leaf(mean));
    let constant = idx.iter().all(|&i| y[i] == y[idx[0]]);
    if n < 2 || depth >= MAX_DEPTH || constant {
        return me;
    }
    let Some((feature, threshold)) = best_split(x, y, idx) else { return me };
    // Partition in place: left = feature value ≤ threshold.
    let mut split = 0;
    for k in 0..n {
        if x[idx[k]][feature] <= threshold {
            idx.swap(k, split);
            split += 1;
        }
    }
    let (l, r) = idx.split_at_mut(split);
    let left = build(x, y, l, depth + 1, nodes);
    let right = build(x, y, r, depth + 1, nodes);
    nodes[me] = Node::Split { feature, threshold, left, right };
    me
}

/// The split with the lowest summed squared error of the two sides; `None` when no feature varies.
#[allow(clippy::needless_range_loop)] // `f` picks a column of every row, not an element of `x`
fn best_split(x: &[Vec<f64>], y: &[f64], idx: &[usize]) -> Option<(usize, f64)> {
    let n = idx.len();
    let d = x.first().map_or(0, Vec::len);
    let (total, total_sq) = idx.iter().fold((0.0, 0.0), |(s, q), &i| (s + y[i], q + y[i] * y[i]));
    let mut best: Option<(f64, usize, f64)> = None;
    let mut order = idx.to_vec();
    for f in 0..d {
        order.sort_by(|&a, &b| x[a][f].total_cmp(&x[b][f]));
        let (mut s, mut q) = (0.0, 0.0);
        for k in 1..n {
            let yi = y[order[k - 1]];
            s += yi;
            q += yi * yi;
            let (lo, hi) = (x[order[k - 1]][f], x[order[k]][f]);
            if lo >= hi {
                continue;
            }
            let (nl, nr) = (k as f64, (n - k) as f64);
            let sse = (q - s * s / nl) + ((total_sq - q) - (total - s).powi(2) / nr);
            if best.is_none_or(|(b, _, _)| sse < b) {
                best = Some((sse, f, 0.5 * (lo + hi)));
            }
        }
    }
    best.map(|(_, f, t)| (f, t))
}

/// A tiny deterministic generator (Steele et al.'s SplitMix64): reports must not change between runs.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize) -> impl Iterator<Item = (f64, f64, f64)> {
        (0..n).map(move |i| {
            let u = |k: u64| ((i as u64 * k + 7) % 101) as f64 / 100.0;
            (u(37), u(59), u(83))
        })
    }

    #[test]
    fn the_only_parameter_that_matters_explains_most_variance() {
        let (x, y): (Vec<Vec<f64>>, Vec<f64>) = grid(80).map(|(a, b, c)| (vec![a, b, c], (b - 0.3).powi(2))).unzip();
        let forest = Forest::fit(&x, &y, vec![(0.0, 1.0); 3], 1);
        let v = forest.variance_fractions();
        assert!(v[1] > 0.9, "{v:?}");
        assert!(v[0] < 0.05 && v[2] < 0.05, "{v:?}");
    }

    #[test]
    fn additive_objective_splits_variance_by_weight() {
        // y = 2a + b on the unit square: Var(2a) = 4/12, Var(b) = 1/12 → fractions 0.8 / 0.2.
        let (x, y): (Vec<Vec<f64>>, Vec<f64>) = grid(100).map(|(a, b, _)| (vec![a, b], 2.0 * a + b)).unzip();
        let v = Forest::fit(&x, &y, vec![(0.0, 1.0); 2], 3).variance_fractions();
        assert!((v[0] - 0.8).abs() < 0.1 && (v[1] - 0.2).abs() < 0.1, "{v:?}");
    }

    #[test]
    fn constant_objective_has_no_importance() {
        let x = vec![vec![0.1], vec![0.5], vec![0.9]];
        let v = Forest::fit(&x, &[1.0, 1.0, 1.0], vec![(0.0, 1.0)], 0).variance_fractions();
        assert_eq!(v, vec![0.0]);
    }

    #[test]
    fn pairwise_marginal_follows_the_objective() {
        let (x, y): (Vec<Vec<f64>>, Vec<f64>) = grid(100).map(|(a, b, c)| (vec![a, b, c], a - b)).unzip();
        let forest = Forest::fit(&x, &y, vec![(0.0, 1.0); 3], 5);
        let z = forest.pairwise_marginal(0, 1, &[0.1, 0.9], &[0.1, 0.9]);
        assert!(z[0][1] > z[0][0] && z[0][0] > z[1][0], "{z:?}"); // increases with a, decreases with b
        assert!((z[0][1] - 0.8).abs() < 0.2 && (z[1][0] + 0.8).abs() < 0.2, "{z:?}");
    }
}
