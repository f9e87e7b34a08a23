//! Tree-structured Parzen Estimator (TPE), with Optuna 5.0's semantics and defaults.
//!
//! TPE splits the history into a "below" (good) and an "above" (bad) group, fits a Parzen
//! estimator to each — l(x) and g(x), mixtures of one kernel per trial plus a wide prior — draws
//! `n_ei_candidates` points from l(x) and keeps the one that maximises log l(x) − log g(x)
//! (Bergstra et al. 2011; Watanabe 2023, "Tree-structured Parzen estimator: understanding its
//! algorithm components and why it works").
//!
//! What this implementation does, as Optuna 5.0's `TPESampler` does by default (single
//! objective); `tests/tpe_golden.rs` checks it against Optuna itself, to 1e-9, on fixtures that
//! `benches/optuna_reference.py` computes with Optuna's own internals:
//! - The first `n_startup_trials` (COMPLETE, PRUNED and out-of-memory trials count) are sampled by a composed
//!   [`RandomSampler`]; so is everything while the history is too short.
//! - The below group holds the best γ(n) = min(⌈0.1·n⌉, 25) of the n finished trials: COMPLETE ones
//!   ranked by loss, then PRUNED ones by deepest step and last intermediate value as a loss (NaN
//!   worst, no intermediate values after all others); ties keep the order of trial numbers.
//!   FAIL and WAITING trials are ignored, except trials that ran out of memory
//!   ([`FrozenTrial::is_oom`]): those are infeasible, counted in n and ranked after every COMPLETE
//!   and PRUNED trial, as Optuna's `constraints_func` ranks trials that violate a constraint, so
//!   they land in the above group and g(x) steers the search away from them (with none, the
//!   split is Optuna's exactly). With such trials the pick also adds c-TPE's constraint term,
//!   log f(x) − log i(x), the Parzen densities of the feasible (COMPLETE, PRUNED) and infeasible
//!   trials (Watanabe & Hutter 2023): in a space of several parameters the above group alone left
//!   about one suggestion in seven in the region (`tests/oom_avoidance.rs`). With `constant_liar`, other RUNNING trials join the
//!   above group, which steers parallel workers away from each other's pending points.
//! - Both groups' observations are weighted by [`default_weights`] (1 each, except that with more
//!   than 25 of them the older n − 25 get a linear ramp from 1/n to 1), the prior gets
//!   `prior_weight`, and the weights are normalised.
//! - Multivariate (the default): the parameters that every finished trial has are sampled
//!   jointly, one product kernel per trial; the others one at a time (univariate, through
//!   `sample_independent`). With `group` (off by default, as in Optuna), the history is instead
//!   decomposed into groups of parameters that always appear together and each group is sampled
//!   jointly.
//! - Bandwidths, multivariate and univariate alike (Optuna's `compute_sigmas`): per dimension,
//!   each kernel's distance to the farther of its sorted neighbours, the ends of the range
//!   (widened by ±step/2 for grids, logged for log parameters) being the outermost neighbours;
//!   without `consider_endpoints` the first and last kernels take the gap to their inner
//!   neighbour. Then the "magic clip" to [range/min(100, n + 2), range]. The prior kernel sits at
//!   the range's centre with σ = range.
//! - Kernels: truncated Gaussians (in log space for log parameters); int and stepped parameters
//!   put the Gaussian over bins of width `step`, widened by ±step/2 at the ends, and the draw is
//!   rounded onto the grid; categorical kernels put weight 1 + a on the observed choice and a =
//!   prior_weight/(n + 1) on every choice (the prior's row is uniform).
//! - The pick is the first candidate that maximises log l(x) − log g(x).
//!
//! Deliberate differences from Optuna: the random stream (numpy's `RandomState` cannot be
//! reproduced; every suggestion is a deterministic function of (study seed, trial number,
//! history), all randomness coming from [`SamplingContext::rng`]), so the candidates differ; and
//! tied kernel centres are ordered by trial number, where Optuna's `np.argsort` uses a
//! platform-dependent order. Only the single-objective sampler exists.
//!
//! Speed: one pass over the history checks each usable trial against a small per-sampler cache of
//! the encoded rows of finished trials (immutable by the `Storage` invariants), so a long-lived
//! sampler reads each trial's parameter map once, and the columns of the sampled parameters are
//! gathered straight from the cached rows. Evaluating l and g at the candidates is laid out
//! kernel-major with the candidates as the vectorised inner dimension (with copies of the loop
//! for up to three continuous and three discrete dimensions, compiled for AVX-512 and AVX2 where
//! the CPU has them, without FMA so that every build rounds alike), discrete and categorical
//! parameters become table lookups, and the log-sum-exp uses a single pass against a
//! per-candidate upper bound (see `parzen.rs`). That loop and the kernels' truncation constants
//! are bound by the latency of their chains of dependent operations rather than by their number,
//! so their polynomials go by Estrin's scheme and the independent terms are summed apart. The
//! per-kernel bandwidths need each dimension's kernel centres in order: the row cache keeps every
//! column's rows sorted (an ask inserts the few new ones), so an ask only filters that order into
//! the two estimators and walks it once. Kernels near a bound get their truncation constant from
//! the precise `log_gauss_mass`, the others from a fast approximation that is exact to ~1e-14
//! there, computed in one vectorised pass with 1/(σ√2) and ln σ; the precise constants and the
//! grid kernels' bin masses go through a small per-thread memo, as their arguments recur from ask
//! to ask. None of this changes a suggestion: `TPE_ASK_TRACE=1000` of the benchmark prints the same
//! 1000 suggestions, bit for bit, as before these shortcuts. An ask over 1000 finished trials of a
//! 5-parameter space takes about 0.14 ms of CPU time (0.085 ms at 500, 0.034 ms at 100; `cargo
//! bench -p nightshift-search --bench tpe_ask`, group `tpe_ask_cpu`, on a busy 2-core machine where,
//! in the same run, the version before the sorted-row cache took 0.22, 0.14 and 0.067 ms; 1.95 M
//! instructions per ask at 1000 under callgrind, against 2.46 M). The benchmark repeats one ask on
//! a fixed history, which flatters those caches a little: a whole 1000-trial study
//! (`TPE_ASK_TRACE=1000`) takes 0.09–0.10 s of CPU time against 0.14 s before. About a fifth of an
//! ask is the scoring loop; interleaving three candidate blocks per kernel, or packing each
//! kernel's numbers into one record, made it slower on that machine.

mod parzen;
/// The truncated normal distribution of the kernels.
pub mod truncnorm;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, TryLockError};

use serde::{Deserialize, Serialize};

#[doc(hidden)]
pub use self::parzen::DimReport;
use self::parzen::{Dim, Kind, LANES, Parzen, ParzenParams};
use super::{RandomSampler, Sampler, SamplingContext, TrialNotes, sample_in_parts, sample_rest_independently};
use crate::error::{Error, Result};
use crate::space::{Distribution, ParamValue, SearchSpace};
use crate::trial::{FrozenTrial, TrialState};

/// TPE options; the defaults are Optuna 5.0's (`TPESampler()` for one objective).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpeConfig {
    /// Trials (COMPLETE + PRUNED) sampled at random before TPE takes over.
    pub n_startup_trials: usize,
    /// Candidates drawn from l(x) per suggestion.
    pub n_ei_candidates: usize,
    /// Weight of the prior kernel in both estimators.
    pub prior_weight: f64,
    /// Lower-bound kernel widths by range / min(100, n + 2) (n observations); otherwise by 1e-12.
    pub consider_magic_clip: bool,
    /// Let the first and last kernels of a dimension see the range's ends as neighbours when
    /// choosing their widths (otherwise they take the gap to their inner neighbour).
    pub consider_endpoints: bool,
    /// Sample the parameters that every finished trial has jointly (one product kernel per
    /// trial); the rest one at a time. Off: every parameter one at a time.
    pub multivariate: bool,
    /// With `multivariate`, sample each group of always-co-occurring parameters jointly instead
    /// (Optuna's experimental `group`; off by default, as there).
    pub group: bool,
    /// Treat RUNNING trials as bad ("above") so parallel workers spread out.
    pub constant_liar: bool,
}

impl Default for TpeConfig {
    fn default() -> Self {
        Self {
            n_startup_trials: 10,
            n_ei_candidates: 24,
            prior_weight: 1.0,
            consider_magic_clip: true,
            consider_endpoints: false,
            multivariate: true,
            group: false,
            constant_liar: true,
        }
    }
}

/// The TPE sampler. See the module documentation for the algorithm.
pub struct TpeSampler {
    config: TpeConfig,
    /// Encoded rows of finished trials from earlier asks.
    cache: Mutex<RowCache>,
}

impl TpeSampler {
    /// The sampler with these options.
    pub fn new(config: TpeConfig) -> Self {
        Self { config, cache: Mutex::default() }
    }

    /// Its options.
    pub fn config(&self) -> &TpeConfig {
        &self.config
    }

    fn parzen_params(&self) -> ParzenParams {
        ParzenParams {
            prior_weight: if self.config.prior_weight.is_finite() { self.config.prior_weight.max(0.0) } else { 1.0 },
            consider_magic_clip: self.config.consider_magic_clip,
            consider_endpoints: self.config.consider_endpoints,
        }
    }

    fn in_startup(&self, ctx: &SamplingContext<'_>) -> bool {
        let n = self.config.n_startup_trials;
        let finished = ctx.trials.iter().filter(|t| counts_as_finished(t)).take(n).count();
        finished < n
    }
}

/// A clone starts with an empty row cache.
impl Clone for TpeSampler {
    fn clone(&self) -> Self {
        Self::new(self.config.clone())
    }
}

impl fmt::Debug for TpeSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpeSampler").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Optuna's default γ: how many of `n` finished trials form the "below" group.
pub fn default_gamma(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// Optuna's default observation weights, oldest first: all 1 below 25 observations, otherwise a
/// linear ramp from 1/n to 1 over the older n − 25 and 1 for the latest 25.
pub fn default_weights(n: usize) -> Vec<f64> {
    let mut w = vec![1.0; n];
    if n >= 25 {
        let ramp = n - 25;
        let start = 1.0 / n as f64;
        for (i, wi) in w.iter_mut().take(ramp).enumerate() {
            // numpy.linspace(1/n, 1, ramp)
            *wi = if ramp == 1 { start } else { start + (1.0 - start) * i as f64 / (ramp - 1) as f64 };
        }
    }
    w
}

/// Sort key of a PRUNED trial (smaller is better): deepest step first, then its value there
/// (as a loss; NaN worst); trials without intermediate values after all others.
fn pruned_key(trial: &FrozenTrial, ctx: &SamplingContext<'_>) -> (f64, f64) {
    match trial.last_step() {
        Some((step, v)) => (-(step as f64), nan_worst(ctx.direction.to_loss(v))),
        None => (1.0, 0.0),
    }
}

/// The trials TPE learns from: COMPLETE, PRUNED, and out-of-memory FAIL trials (infeasible ones,
/// which Optuna's constraint handling also counts: there they are COMPLETE with a violated
/// constraint). Other failures are ignored.
fn counts_as_finished(trial: &FrozenTrial) -> bool {
    matches!(trial.state, TrialState::Complete | TrialState::Pruned) || trial.is_oom()
}

fn nan_worst(loss: f64) -> f64 {
    if loss.is_nan() { f64::INFINITY } else { loss }
}

/// The internal value of `value`, if it lies in `dist`'s range. Cheaper than
/// [`Distribution::to_internal`] (no error value); off-grid numbers are snapped by `Dim::encode`.
#[inline]
fn internal_value(dist: &Distribution, value: &ParamValue) -> Option<f64> {
    match *dist {
        Distribution::Float { low, high, .. } => {
            let x = value.as_f64()?;
            let eps = 1e-12 * (high - low).abs().max(1.0);
            (x >= low - eps && x <= high + eps).then_some(x)
        }
        Distribution::Int { low, high, .. } => {
            let x = value.as_f64()?;
            (x >= low as f64 && x <= high as f64).then_some(x)
        }
        Distribution::Categorical { ref choices } => choices.iter().position(|c| c == value).map(|i| i as f64),
    }
}

/// `a.cmp(b)` for strings, eight bytes at a time without a call into libc: parameter names are
/// short, and this comparison runs for every parameter of every trial of every ask.
#[inline]
fn cmp_names(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().unwrap_or([0; 8]));
        let y = u64::from_be_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return a[i].cmp(&b[i]);
        }
        i += 1;
    }
    a.len().cmp(&b.len())
}

/// Encoded parameter rows of finished trials, kept across asks so that a long-lived sampler (a
/// `Study` that asks many times) reads each trial's parameter map once rather than on every ask.
/// Sound because COMPLETE and PRUNED snapshots never change and a trial's `id` is unique within
/// its storage (the `Storage` invariants); every row also records the trial's id, state and
/// value, and a row that no longer matches its trial is recomputed. One table per (study,
/// parameter list), at most [`RowCache::MAX_TABLES`] of them, each bounded in size.
#[derive(Default)]
struct RowCache {
    /// Least recently used first.
    tables: Vec<RowTable>,
}

impl RowCache {
    const MAX_TABLES: usize = 8;

    /// The table for `params` of `study`, created if needed and marked most recently used.
    fn table(&mut self, study: &str, params: &[(&str, &Distribution)]) -> &mut RowTable {
        match self.tables.iter().position(|t| t.is_for(study, params)) {
            Some(i) => {
                let table = self.tables.remove(i);
                self.tables.push(table);
            }
            None => {
                if self.tables.len() == Self::MAX_TABLES {
                    self.tables.remove(0);
                }
                self.tables.push(RowTable::new(study, params));
            }
        }
        let last = self.tables.len() - 1;
        &mut self.tables[last]
    }
}

/// What identifies a finished trial's snapshot beyond its number.
#[derive(Clone, Copy, PartialEq)]
struct Stamp {
    id: i64,
    state: TrialState,
    value: Option<u64>,
}

impl Stamp {
    fn of(trial: &FrozenTrial) -> Self {
        Self { id: trial.id, state: trial.state, value: trial.value.map(f64::to_bits) }
    }
}

/// Rows indexed by trial number (numbers are 0, 1, 2, … within a study), so that a lookup is an
/// index and a comparison, not a hash.
struct RowTable {
    study: String,
    params: Vec<(String, Distribution)>,
    /// Per trial number: the snapshot the row was computed from, if any.
    stamps: Vec<Option<Stamp>>,
    /// Row-major, `params.len()` values per trial number.
    values: Vec<f64>,
    /// Per parameter: the cached rows that have a value there, ordered by (value, trial number),
    /// so that an ask finds every column's kernel centres in order without sorting them (an ask
    /// adds a few rows to a history it has seen). Up to date after [`RowTable::refresh_sorted`].
    sorted: Vec<Vec<u32>>,
    /// Rows put since `sorted` was last refreshed.
    pending: Vec<u32>,
    /// A put replaced a row that `sorted` may hold: rebuild it.
    stale: bool,
}

impl RowTable {
    /// Trials numbered from this on are not cached (which bounds a table to
    /// `MAX_ROWS · params.len()` values).
    const MAX_ROWS: u64 = 1 << 18;

    fn new(study: &str, params: &[(&str, &Distribution)]) -> Self {
        Self {
            study: study.to_string(),
            params: params.iter().map(|&(n, d)| (n.to_string(), d.clone())).collect(),
            stamps: Vec::new(),
            values: Vec::new(),
            sorted: Vec::new(),
            pending: Vec::new(),
            stale: false,
        }
    }

    fn is_for(&self, study: &str, params: &[(&str, &Distribution)]) -> bool {
        self.study == study
            && self.params.len() == params.len()
            && self.params.iter().zip(params).all(|((n, d), (m, e))| n == m && d == *e)
    }

    /// The row index of `trial`'s cached coordinates (`values[i · d..(i + 1) · d]`), if the cache
    /// holds its current snapshot.
    #[inline]
    fn index_of(&self, trial: &FrozenTrial) -> Option<usize> {
        let i = usize::try_from(trial.number).ok()?;
        match self.stamps.get(i) {
            Some(&Some(stamp)) if stamp == Stamp::of(trial) => Some(i),
            _ => None,
        }
    }

    /// Caches `row` as `trial`'s coordinates; returns its row index, or `None` when the trial's
    /// number is beyond the cached range.
    fn put(&mut self, trial: &FrozenTrial, row: &[f64]) -> Option<usize> {
        let d = self.params.len();
        if trial.number >= Self::MAX_ROWS || row.len() != d {
            return None;
        }
        let i = trial.number as usize;
        if i >= self.stamps.len() {
            // Grow geometrically, also when trials arrive in decreasing order.
            let len = (i + 1).max(2 * self.stamps.len());
            self.stamps.resize(len, None);
            self.values.resize(len * d, f64::NAN);
        }
        if self.stamps[i].is_some() {
            self.stale = true;
        } else {
            self.pending.push(i as u32);
        }
        self.stamps[i] = Some(Stamp::of(trial));
        self.values[i * d..(i + 1) * d].copy_from_slice(row);
        Some(i)
    }

    /// Brings `sorted` up to date with the rows put since the last call: inserts a few, or sorts
    /// afresh when many are new (the first ask) or a row changed.
    fn refresh_sorted(&mut self) {
        let d = self.params.len();
        if self.pending.is_empty() && !self.stale && self.sorted.len() == d {
            return;
        }
        let cached = self.stamps.iter().filter(|s| s.is_some()).count();
        let values = &self.values;
        if self.stale || self.sorted.len() != d || 8 * self.pending.len() > cached {
            let rows: Vec<u32> = (0..self.stamps.len() as u32).filter(|&i| self.stamps[i as usize].is_some()).collect();
            self.sorted = (0..d)
                .map(|j| {
                    let mut col: Vec<u32> = rows.iter().copied().filter(|&i| !values[i as usize * d + j].is_nan()).collect();
                    // Stable: equal values stay in order of number.
                    col.sort_by(|&a, &b| values[a as usize * d + j].total_cmp(&values[b as usize * d + j]));
                    col
                })
                .collect();
        } else {
            for &i in &self.pending {
                for (j, col) in self.sorted.iter_mut().enumerate() {
                    let v = values[i as usize * d + j];
                    if v.is_nan() {
                        continue;
                    }
                    let at = col.partition_point(|&r| values[r as usize * d + j].total_cmp(&v).then(r.cmp(&i)).is_lt());
                    col.insert(at, i);
                }
            }
        }
        self.pending.clear();
        self.stale = false;
    }
}

/// Writes into `row` the coordinates of `trial`'s parameters `params` (sorted by name): NaN where
/// the trial lacks one or its value lies outside the distribution.
fn encode_row(trial: &FrozenTrial, params: &[(&str, &Distribution)], dims: &[Dim], row: &mut [f64]) {
    row.fill(f64::NAN);
    let d = params.len();
    // Merge-join the trial's (sorted) parameters with the sorted names.
    let mut j = 0;
    'keys: for (name, value) in &trial.params {
        while j < d {
            match cmp_names(params[j].0, name) {
                Ordering::Less => j += 1,
                Ordering::Greater => continue 'keys,
                Ordering::Equal => {
                    if let Some(x) = internal_value(params[j].1, value) {
                        row[j] = dims[j].encode(x);
                    }
                    j += 1;
                    continue 'keys;
                }
            }
        }
        break;
    }
}

/// Per dimension (empty for categorical ones), the rows of the column-major `cols` (one entry per
/// row) that have a value, ordered by (value, row): from the table's sorted rows when `cache`
/// holds them (rows `src < extra_from` of `entries`), merged with the few rows it does not hold
/// (RUNNING trials); by sorting otherwise.
fn column_orders(
    dims: &[Dim],
    cols: &[f64],
    entries: &[Entry],
    cache: Option<&mut RowTable>,
    extra_from: usize,
) -> Vec<Vec<u32>> {
    let n = entries.len();
    let key = |col: &[f64], a: u32, b: u32| col[a as usize].total_cmp(&col[b as usize]).then(a.cmp(&b));
    // Each cached row's position in `entries`; None if a number repeats (then sort).
    let table = cache.and_then(|table| {
        table.refresh_sorted();
        let mut pos = vec![u32::MAX; table.stamps.len()];
        for (r, e) in entries.iter().enumerate().filter(|(_, e)| e.src < extra_from) {
            if std::mem::replace(&mut pos[e.src], r as u32) != u32::MAX {
                return None;
            }
        }
        Some((table, pos))
    });
    let uncached: Vec<u32> = match &table {
        Some(_) => (0..n as u32).filter(|&r| entries[r as usize].src >= extra_from).collect(),
        None => (0..n as u32).collect(),
    };
    let mut orders = Vec::with_capacity(dims.len());
    for (j, dim) in dims.iter().enumerate() {
        if let Kind::Categorical { .. } = dim.kind {
            orders.push(Vec::new());
            continue;
        }
        let col = &cols[j * n..(j + 1) * n];
        let mut rest: Vec<u32> = uncached.iter().copied().filter(|&r| !col[r as usize].is_nan()).collect();
        rest.sort_by(|&a, &b| key(col, a, b));
        let Some((table, pos)) = &table else {
            orders.push(rest);
            continue;
        };
        let cached = table.sorted[j].iter().map(|&i| pos[i as usize]).filter(|&r| r != u32::MAX);
        if rest.is_empty() {
            orders.push(cached.collect());
            continue;
        }
        // Merge the two sorted lists.
        let mut order = Vec::with_capacity(n);
        let mut rest = rest.into_iter().peekable();
        for r in cached {
            while let Some(&x) = rest.peek().filter(|&&x| key(col, x, r).is_lt()) {
                order.push(x);
                rest.next();
            }
            order.push(r);
        }
        order.extend(rest);
        orders.push(order);
    }
    orders
}

/// A usable trial while the history is read: where its coordinates are, its loss, its state.
#[derive(Clone, Copy)]
struct Entry {
    src: usize,
    loss: f64,
    state: TrialState,
}

/// The history as TPE sees it for one call: one row per usable trial, ordered by number.
struct History<'p> {
    /// Names of the parameters being sampled (sorted), and their models.
    dims: Vec<Dim>,
    names: Vec<&'p str>,
    /// Column-major encoded coordinates, one column of `len()` rows per parameter; NaN where a
    /// trial lacks the parameter.
    cols: Vec<f64>,
    /// Per row: the trial's number, whether it is in the below group, and whether it is finished.
    numbers: Vec<u64>,
    below: Vec<bool>,
    finished: Vec<bool>,
    /// Per row: the trial ran out of memory (infeasible).
    infeasible: Vec<bool>,
    /// With at most 64 parameters, per row: bit `j` is set when parameter `j` is present (not
    /// NaN); empty otherwise.
    present: Vec<u64>,
    /// Per numerical parameter: the rows that have it, ordered by (coordinate, row), which orders
    /// the kernel centres; empty for categorical ones.
    orders: Vec<Vec<u32>>,
}

impl<'p> History<'p> {
    /// Extracts, for the parameters `params` (sorted by name), every COMPLETE/PRUNED trial — and
    /// RUNNING ones other than the current trial when `constant_liar` — and splits them. Rows of
    /// finished trials come from `cache` when it has them, and go into it otherwise.
    fn collect(
        ctx: &SamplingContext<'_>,
        params: &[(&'p str, &Distribution)],
        constant_liar: bool,
        mut cache: Option<&mut RowTable>,
    ) -> Self {
        let d = params.len();
        let dims: Vec<Dim> = params.iter().map(|(_, dist)| Dim::new(dist)).collect();
        // One pass over the trials (large structs, so each is read once): the usable ones in
        // order, with their state, loss and where their coordinates are: a row of the cache
        // (`src < EXTRA`), or, for rows the cache cannot hold, `extra` (row-major, from `EXTRA`).
        const EXTRA: usize = 1 << 62;
        let mut rows: Vec<&FrozenTrial> = Vec::with_capacity(ctx.trials.len());
        let mut entries: Vec<Entry> = Vec::with_capacity(ctx.trials.len());
        let mut extra: Vec<f64> = Vec::new();
        let mut row = vec![f64::NAN; d];
        let mut sorted = true;
        let mut last_number = 0;
        let sign = ctx.direction.to_loss(1.0);
        for trial in ctx.trials {
            let state = trial.state;
            let finished = match state {
                TrialState::Complete | TrialState::Pruned => true,
                TrialState::Running if constant_liar && trial.number != ctx.trial_number => false,
                TrialState::Fail if trial.is_oom() => true,
                _ => continue,
            };
            sorted &= rows.is_empty() || last_number <= trial.number;
            last_number = trial.number;
            let cached = match cache.as_deref() {
                Some(table) if finished => table.index_of(trial),
                _ => None,
            };
            let src = match cached {
                Some(i) => i,
                None => {
                    encode_row(trial, params, &dims, &mut row);
                    match cache.as_deref_mut().filter(|_| finished && d > 0).and_then(|table| table.put(trial, &row)) {
                        Some(i) => i,
                        None => {
                            extra.extend_from_slice(&row);
                            EXTRA + extra.len() - d
                        }
                    }
                }
            };
            // `to_loss` is a sign flip (−0·NaN stays NaN).
            let loss = match trial.value {
                Some(v) => nan_worst(v * sign),
                None => f64::INFINITY,
            };
            rows.push(trial);
            entries.push(Entry { src, loss, state });
        }
        let n = rows.len();
        if !sorted {
            // Sort by number, without reordering ties.
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&i| rows[i].number);
            rows = order.iter().map(|&i| rows[i]).collect();
            entries = order.iter().map(|&i| entries[i]).collect();
        }
        // Column-major coordinates, straight from the cache rows (and `extra`), and with up to 64
        // parameters each row's presence bits (bit j: parameter j is not NaN).
        let table_values: &[f64] = cache.as_deref().map_or(&[], |t| &t.values);
        let offsets: Vec<usize> = entries.iter().map(|e| if e.src < EXTRA { e.src * d } else { e.src }).collect();
        let mut cols: Vec<f64> = Vec::with_capacity(n * d);
        for j in 0..d {
            if extra.is_empty() {
                let values = table_values.get(j..).unwrap_or_default();
                cols.extend(offsets.iter().map(|&o| values[o]));
            } else {
                cols.extend(offsets.iter().map(|&o| if o < EXTRA { table_values[o + j] } else { extra[o - EXTRA + j] }));
            }
        }
        let mut present: Vec<u64> = Vec::new();
        if d > 0 && d <= 64 {
            present.resize(n, 0);
            for j in 0..d {
                for (bits, &x) in present.iter_mut().zip(&cols[j * n..(j + 1) * n]) {
                    *bits |= u64::from(!x.is_nan()) << j;
                }
            }
        }

        // Split: the best γ(n) COMPLETE trials by loss, then PRUNED ones by (−step, value).
        let finished: Vec<bool> = entries.iter().map(|e| e.state != TrialState::Running).collect();
        let n_finished = finished.iter().filter(|&&f| f).count();
        let mut n_below = default_gamma(n_finished);
        let mut below = vec![false; n];
        // Only the best γ ≤ 25 matter: one pass keeps them in a short sorted list, ordered by
        // (loss, row), so ties go to the lower number.
        let mut best: Vec<(f64, usize)> = Vec::with_capacity(n_below + 1);
        let mut n_complete = 0;
        for (i, e) in entries.iter().enumerate() {
            if e.state != TrialState::Complete {
                continue;
            }
            let loss = e.loss;
            n_complete += 1;
            if n_below == 0 {
                continue;
            }
            // Losses are never NaN here; −0 and +0 tie, as in Optuna's (stable) sort.
            if best.len() == n_below && loss >= best[n_below - 1].0 {
                continue;
            }
            let at = best.partition_point(|&(l, _)| l <= loss);
            best.insert(at, (loss, i));
            best.truncate(n_below);
        }
        for &(_, i) in &best {
            below[i] = true;
        }
        n_below = n_below.saturating_sub(n_complete);
        if n_below > 0 {
            let mut pruned: Vec<((f64, f64), usize)> = rows
                .iter()
                .enumerate()
                .filter(|(_, t)| t.state == TrialState::Pruned)
                .map(|(i, t)| (pruned_key(t, ctx), i))
                .collect();
            pruned.sort_by(|a, b| a.0.0.total_cmp(&b.0.0).then(a.0.1.total_cmp(&b.0.1)).then(a.1.cmp(&b.1)));
            for &(_, i) in pruned.iter().take(n_below) {
                below[i] = true;
            }
            n_below = n_below.saturating_sub(pruned.len());
        }
        // Out-of-memory trials are infeasible: ranked after every feasible one (as Optuna ranks
        // trials that violate a constraint), all alike, so in order of number.
        if n_below > 0 {
            for (i, _) in entries.iter().enumerate().filter(|(_, e)| e.state == TrialState::Fail).take(n_below) {
                below[i] = true;
            }
        }
        let numbers = rows.iter().map(|t| t.number).collect();
        let orders = column_orders(&dims, &cols, &entries, cache, EXTRA);
        let infeasible = entries.iter().map(|e| e.state == TrialState::Fail).collect();
        Self {
            dims,
            names: params.iter().map(|&(n, _)| n).collect(),
            cols,
            numbers,
            below,
            finished,
            infeasible,
            present,
            orders,
        }
    }

    fn len(&self) -> usize {
        self.below.len()
    }

    /// Column `j`: parameter `j`'s coordinate in every row.
    fn col(&self, j: usize) -> &[f64] {
        let n = self.len();
        &self.cols[j * n..(j + 1) * n]
    }

    /// Optuna's group decomposition over the finished trials: the coarsest partition of the
    /// parameters such that every trial's parameter set is a union of parts. Each group is a
    /// list of column indices, sorted; groups are ordered by their first column.
    fn groups(&self) -> Vec<Vec<usize>> {
        let d = self.dims.len();
        // Distinct non-empty parameter sets of finished trials, in order of first appearance.
        let mut masks: Vec<Vec<bool>> = Vec::new();
        if d <= 64 {
            let mut seen: Vec<u64> = Vec::new();
            for (&b, _) in self.present.iter().zip(&self.finished).filter(|&(_, &f)| f) {
                if b != 0 && seen.last() != Some(&b) && !seen.contains(&b) {
                    seen.push(b);
                }
            }
            masks.extend(seen.iter().map(|&b| (0..d).map(|j| b >> j & 1 == 1).collect()));
        } else {
            let mut mask = vec![false; d];
            for row in (0..self.len()).filter(|&r| self.finished[r]) {
                for (j, m) in mask.iter_mut().enumerate() {
                    *m = !self.col(j)[row].is_nan();
                }
                if mask.iter().any(|&m| m) && !masks.contains(&mask) {
                    masks.push(mask.clone());
                }
            }
        }
        // Parameters with the same membership signature across distinct masks form one group.
        let mut groups: Vec<(Vec<bool>, Vec<usize>)> = Vec::new();
        for j in 0..d {
            let signature: Vec<bool> = masks.iter().map(|m| m[j]).collect();
            if !signature.iter().any(|&s| s) {
                continue;
            }
            match groups.iter_mut().find(|(s, _)| *s == signature) {
                Some((_, members)) => members.push(j),
                None => groups.push((signature, vec![j])),
            }
        }
        groups.into_iter().map(|(_, members)| members).collect()
    }

    /// The parameters present in every finished trial (Optuna's intersection search space).
    fn intersection(&self) -> Vec<usize> {
        if !self.finished.iter().any(|&f| f) {
            return Vec::new();
        }
        (0..self.dims.len()).filter(|&j| self.col(j).iter().zip(&self.finished).all(|(v, &f)| !f || !v.is_nan())).collect()
    }
}

impl TpeSampler {
    /// [`History::collect`] through this sampler's row cache. Another thread holding the cache
    /// does not make this one wait: it reads the history itself.
    fn history<'p>(&self, ctx: &SamplingContext<'_>, params: &[(&'p str, &Distribution)]) -> History<'p> {
        let liar = self.config.constant_liar;
        let mut guard = match self.cache.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => {
                let mut guard = poisoned.into_inner();
                guard.tables.clear();
                self.cache.clear_poison();
                guard
            }
            Err(TryLockError::WouldBlock) => return History::collect(ctx, params, liar, None),
        };
        let table = guard.table(ctx.study_name, params);
        History::collect(ctx, params, liar, Some(table))
    }

    /// The indices of the parameters `params` (sorted by name) that every finished trial has,
    /// with a value inside its distribution (Optuna's intersection search space); none without
    /// finished trials. A lighter pass than [`History::collect`] (no split, no columns), through
    /// the row cache.
    fn intersection(&self, ctx: &SamplingContext<'_>, params: &[(&str, &Distribution)]) -> Vec<usize> {
        let d = params.len();
        let dims: Vec<Dim> = params.iter().map(|(_, dist)| Dim::new(dist)).collect();
        let mut guard = match self.cache.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(_)) | Err(TryLockError::WouldBlock) => None,
        };
        let mut table = guard.as_deref_mut().map(|cache| cache.table(ctx.study_name, params));
        let mut all = vec![true; d];
        let mut any_finished = false;
        let mut row = vec![f64::NAN; d];
        for trial in ctx.trials.iter().filter(|t| counts_as_finished(t)) {
            any_finished = true;
            let cached = table.as_deref().and_then(|t| t.index_of(trial));
            let values: &[f64] = match (cached, table.as_deref()) {
                (Some(i), Some(t)) => &t.values[i * d..(i + 1) * d],
                _ => {
                    encode_row(trial, params, &dims, &mut row);
                    if let Some(t) = table.as_deref_mut().filter(|_| d > 0) {
                        t.put(trial, &row);
                    }
                    &row
                }
            };
            for (a, v) in all.iter_mut().zip(values) {
                *a &= !v.is_nan();
            }
        }
        if !any_finished {
            return Vec::new();
        }
        (0..d).filter(|&j| all[j]).collect()
    }

    /// Samples the columns `group` of `history` jointly; returns their encoded coordinates.
    fn sample_group(&self, ctx: &SamplingContext<'_>, history: &History<'_>, group: &[usize]) -> Vec<f64> {
        let fit = GroupFit::new(history, group);
        let (l, g) = fit.estimators(self.parzen_params());
        let d = fit.dims.len();
        let salt = format!("tpe/{}", history.names[group[0]]);
        let mut rng = ctx.rng(&salt);
        let n_cand = self.config.n_ei_candidates.max(1);
        let mut samples = Vec::new();
        l.sample(&mut rng, n_cand, &mut samples);
        // With out-of-memory trials, c-TPE's constraint term: the density ratio of feasible to
        // infeasible trials (Watanabe & Hutter 2023, "c-TPE: tree-structured Parzen estimator with
        // inequality constraints"), since the above group alone lets a candidate that is far from
        // every infeasible trial in the other parameters slip into the region.
        let feasibility = history.infeasible.iter().any(|&i| i).then(|| GroupFit::feasibility(history, group));
        let ratio = feasibility.as_ref().map(|fit| fit.estimators(self.parzen_params()));
        let best = best_candidate(&l, &g, ratio.as_ref().map(|(f, i)| (f, i)), &samples, d).0;
        samples[best * d..(best + 1) * d].to_vec()
    }

    /// Samples the columns `group` of `history` (parameters `params`) jointly into `out`.
    fn sample_group_into(
        &self,
        ctx: &SamplingContext<'_>,
        history: &History<'_>,
        params: &[(&str, &Distribution)],
        group: &[usize],
        out: &mut BTreeMap<String, ParamValue>,
    ) -> Result<()> {
        let v = self.sample_group(ctx, history, group);
        for (&j, &coord) in group.iter().zip(&v) {
            let (name, dist) = params[j];
            let value = dist.to_external(history.dims[j].decode(coord));
            if dist.to_internal(&value).is_err() {
                return Err(Error::Param { param: name.to_string(), message: format!("TPE produced {value}, outside {dist}") });
            }
            out.insert(name.to_string(), value);
        }
        Ok(())
    }

    /// Univariate TPE for one parameter (Optuna's `sample_independent` after the start-up).
    fn sample_one(&self, ctx: &SamplingContext<'_>, name: &str, distribution: &Distribution) -> ParamValue {
        let history = self.history(ctx, &[(name, distribution)]);
        let v = self.sample_group(ctx, &history, &[0]);
        distribution.to_external(history.dims[0].decode(v[0]))
    }
}

/// The observations of one group of parameters (columns of a [`History`]): the rows that have
/// every parameter of the group, split into below and above, in order of trial number.
struct GroupFit {
    dims: Vec<Dim>,
    /// Per dimension, the coordinates of the below (above) rows.
    below: Vec<Vec<f64>>,
    above: Vec<Vec<f64>>,
    /// Per dimension, the below (above) rows' indices in order of their coordinates (empty for
    /// categorical dimensions).
    below_order: Vec<Vec<u32>>,
    above_order: Vec<Vec<u32>>,
}

impl GroupFit {
    /// The below/above split of `history` for the columns `group`.
    fn new(history: &History<'_>, group: &[usize]) -> Self {
        Self::split(history, group, |row| Some(history.below[row]))
    }

    /// The finished rows split into feasible ("below") and out-of-memory ("above") ones.
    fn feasibility(history: &History<'_>, group: &[usize]) -> Self {
        Self::split(history, group, |row| history.finished[row].then(|| !history.infeasible[row]))
    }

    /// Rows that have every column of `group`, split by `side` (true: below; None: left out).
    fn split(history: &History<'_>, group: &[usize], side: impl Fn(usize) -> Option<bool>) -> Self {
        let dims: Vec<Dim> = group.iter().map(|&j| history.dims[j].clone()).collect();
        let cols: Vec<&[f64]> = group.iter().map(|&j| history.col(j)).collect();
        let (mut rows_below, mut rows_above) = (Vec::new(), Vec::with_capacity(history.len()));
        let mut split = |row: usize| match side(row) {
            Some(true) => rows_below.push(row),
            Some(false) => rows_above.push(row),
            None => {}
        };
        if history.present.len() == history.len() {
            let mask = group.iter().fold(0u64, |m, &j| m | 1 << j);
            for (row, &bits) in history.present.iter().enumerate() {
                if bits & mask == mask {
                    split(row);
                }
            }
        } else {
            for row in 0..history.len() {
                if cols.iter().all(|c| !c[row].is_nan()) {
                    split(row);
                }
            }
        }
        let gather = |rows: &[usize]| -> Vec<Vec<f64>> { cols.iter().map(|c| rows.iter().map(|&r| c[r]).collect()).collect() };
        // The history's row orders, as kernel indices of each estimator.
        const BELOW: u32 = 1 << 31;
        let mut kernel = vec![u32::MAX; history.len()];
        for (k, &row) in rows_below.iter().enumerate() {
            kernel[row] = k as u32 | BELOW;
        }
        for (k, &row) in rows_above.iter().enumerate() {
            kernel[row] = k as u32;
        }
        let (mut below_order, mut above_order) = (Vec::with_capacity(group.len()), Vec::with_capacity(group.len()));
        for &j in group {
            if history.orders[j].is_empty() {
                below_order.push(Vec::new());
                above_order.push(Vec::new());
                continue;
            }
            // Every row of the group has this parameter, so each order holds exactly its rows.
            let (mut b, mut a) = (vec![0; rows_below.len()], vec![0; rows_above.len()]);
            let (mut nb, mut na) = (0, 0);
            for &row in &history.orders[j] {
                let k = kernel[row as usize];
                if k == u32::MAX {
                    continue;
                }
                if k & BELOW != 0 {
                    b[nb] = k & !BELOW;
                    nb += 1;
                } else {
                    a[na] = k;
                    na += 1;
                }
            }
            debug_assert!(nb == b.len() && na == a.len());
            below_order.push(b);
            above_order.push(a);
        }
        Self { below: gather(&rows_below), above: gather(&rows_above), below_order, above_order, dims }
    }

    /// l(x) and g(x). Both take their observation weights from [`default_weights`] (Optuna's
    /// single-objective rule) and add the prior.
    fn estimators(&self, params: ParzenParams) -> (Parzen<'_>, Parzen<'_>) {
        let n_below = self.below.first().map_or(0, Vec::len);
        let n_above = self.above.first().map_or(0, Vec::len);
        let l = Parzen::new(&self.dims, &self.below, &default_weights(n_below), params, Some(&self.below_order));
        let g = Parzen::new(&self.dims, &self.above, &default_weights(n_above), params, Some(&self.above_order));
        (l, g)
    }
}

/// The candidate (rows of `d` encoded coordinates in `samples`) that maximises
/// log l(x) − log g(x) (+ log f(x) − log i(x) with a `feasibility` pair: the densities of the
/// feasible and the infeasible trials), the first one on ties (numpy's `argmax`), with every
/// candidate's log l and log g.
fn best_candidate(
    l: &Parzen<'_>,
    g: &Parzen<'_>,
    feasibility: Option<(&Parzen<'_>, &Parzen<'_>)>,
    samples: &[f64],
    d: usize,
) -> (usize, Vec<f64>, Vec<f64>) {
    let n_cand = samples.len().checked_div(d).unwrap_or(0);
    // Column-major, padded to whole blocks by repeating the first candidate.
    let padded = n_cand.div_ceil(LANES) * LANES;
    let columns: Vec<Vec<f64>> =
        (0..d).map(|j| (0..padded).map(|c| samples[(if c < n_cand { c } else { 0 }) * d + j]).collect()).collect();
    let mut log_l = vec![0.0; padded];
    let mut log_g = vec![0.0; padded];
    l.log_pdf(&columns, &mut log_l);
    g.log_pdf(&columns, &mut log_g);
    if let Some((f, i)) = feasibility {
        let (mut log_f, mut log_i) = (vec![0.0; padded], vec![0.0; padded]);
        f.log_pdf(&columns, &mut log_f);
        i.log_pdf(&columns, &mut log_i);
        // Folded into l and g (the pick is by their difference): the returned values are then
        // not l's and g's, which only the golden tests read, on histories without such trials.
        for c in 0..padded {
            log_l[c] += log_f[c];
            log_g[c] += log_i[c];
        }
    }
    log_l.truncate(n_cand);
    log_g.truncate(n_cand);
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for c in 0..n_cand {
        let score = log_l[c] - log_g[c];
        if score > best_score {
            best_score = score;
            best = c;
        }
    }
    (best, log_l, log_g)
}

/// What TPE derives from a history for one set of parameters, as plain data: the split, both
/// fitted estimators, their log densities at given points and the pick among given candidates.
/// For the golden tests against Optuna (`tests/tpe_golden.rs`); not a stable API.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct TpeFitReport {
    /// Whether the history is still in the random start-up phase.
    pub in_startup: bool,
    /// Numbers of the trials in the below and above groups (all usable trials, also those that
    /// lack some of the parameters).
    pub below_trials: Vec<u64>,
    /// Numbers of the trials in the above group.
    pub above_trials: Vec<u64>,
    /// l(x) and g(x): normalised mixture weights and, per parameter (sorted by name), its kernels.
    pub below: (Vec<f64>, Vec<(String, DimReport)>),
    /// g(x), as `below` is l(x).
    pub above: (Vec<f64>, Vec<(String, DimReport)>),
    /// log l and log g at the points.
    pub log_l: Vec<f64>,
    /// log g at the points.
    pub log_g: Vec<f64>,
    /// log l − log g at the candidates, and the index TPE picks.
    pub acquisition: Vec<f64>,
    /// The index TPE picks.
    pub chosen: usize,
}

impl TpeSampler {
    /// Fits l(x) and g(x) for `params` as an ask after the start-up would, evaluates them at
    /// `points`, and picks among `candidates` (our random stream differs from numpy's, so the
    /// golden tests supply Optuna's candidates). Every point must set every parameter.
    #[doc(hidden)]
    pub fn fit_report(
        &self,
        ctx: &SamplingContext<'_>,
        params: &[(&str, &Distribution)],
        points: &[BTreeMap<String, ParamValue>],
        candidates: &[BTreeMap<String, ParamValue>],
    ) -> Result<TpeFitReport> {
        let mut params = params.to_vec();
        params.sort_by(|a, b| a.0.cmp(b.0));
        let history = History::collect(ctx, &params, self.config.constant_liar, None);
        let group: Vec<usize> = (0..params.len()).collect();
        let fit = GroupFit::new(&history, &group);
        let (l, g) = fit.estimators(self.parzen_params());
        let encode = |rows: &[BTreeMap<String, ParamValue>]| -> Result<Vec<f64>> {
            let mut out = Vec::with_capacity(rows.len() * params.len());
            for row in rows {
                for (&(name, dist), dim) in params.iter().zip(&fit.dims) {
                    let value = row
                        .get(name)
                        .ok_or_else(|| Error::Param { param: name.to_string(), message: "missing from a point".into() })?;
                    let x =
                        dist.to_internal(value).map_err(|e| Error::Param { param: name.to_string(), message: e.to_string() })?;
                    out.push(dim.encode(x));
                }
            }
            Ok(out)
        };
        let d = params.len();
        let (_, log_l, log_g) = best_candidate(&l, &g, None, &encode(points)?, d);
        let (chosen, cl, cg) = best_candidate(&l, &g, None, &encode(candidates)?, d);
        let named = |(w, dims): (Vec<f64>, Vec<DimReport>)| (w, params.iter().map(|p| p.0.to_string()).zip(dims).collect());
        let pick =
            |below: bool| history.numbers.iter().zip(&history.below).filter(|(_, b)| **b == below).map(|(n, _)| *n).collect();
        Ok(TpeFitReport {
            in_startup: self.in_startup(ctx),
            below_trials: pick(true),
            above_trials: pick(false),
            below: named(l.report()),
            above: named(g.report()),
            log_l,
            log_g,
            acquisition: cl.iter().zip(&cg).map(|(a, b)| a - b).collect(),
            chosen,
        })
    }
}

/// The single value of a one-value distribution.
fn single_value(distribution: &Distribution) -> ParamValue {
    match *distribution {
        Distribution::Float { low, .. } => distribution.to_external(low),
        Distribution::Int { low, .. } => distribution.to_external(low as f64),
        Distribution::Categorical { .. } => distribution.to_external(0.0),
    }
}

impl Sampler for TpeSampler {
    /// With `multivariate`: the (non-single) parameters of `space` that finished trials have —
    /// all of them with `group`, those every finished trial has without it. Empty during the
    /// start-up phase, so that everything is sampled at random.
    fn infer_relative_search_space(&self, ctx: &SamplingContext<'_>, space: &SearchSpace) -> SearchSpace {
        let mut relative = SearchSpace::new();
        if !self.config.multivariate || self.in_startup(ctx) {
            return relative;
        }
        if !self.config.group {
            // The intersection, from the (cached) encoded rows: a column is NaN where a trial
            // lacks the parameter or has a value outside it.
            let mut params: Vec<(&str, &Distribution)> = space.iter().filter(|(_, d)| !d.is_single()).collect();
            params.sort_by(|a, b| a.0.cmp(b.0));
            for j in self.intersection(ctx, &params) {
                relative.insert(params[j].0, params[j].1.clone());
            }
            return relative;
        }
        let finished = || ctx.trials.iter().filter(|t| counts_as_finished(t));
        for (name, dist) in space.iter().filter(|(_, d)| !d.is_single()) {
            let has = |t: &FrozenTrial| t.params.get(name).is_some_and(|v| dist.to_internal(v).is_ok());
            if finished().any(has) {
                relative.insert(name, dist.clone());
            }
        }
        relative
    }

    fn sample_relative(&self, ctx: &SamplingContext<'_>, space: &SearchSpace) -> Result<BTreeMap<String, ParamValue>> {
        let mut out = BTreeMap::new();
        if space.is_empty() || !self.config.multivariate || self.in_startup(ctx) {
            return Ok(out);
        }
        let mut params: Vec<(&str, &Distribution)> = space.iter().filter(|(_, d)| !d.is_single()).collect();
        params.sort_by(|a, b| a.0.cmp(b.0));
        let history = self.history(ctx, &params);
        let groups = if self.config.group { history.groups() } else { vec![history.intersection()] };
        for group in groups.iter().filter(|g| !g.is_empty()) {
            self.sample_group_into(ctx, &history, &params, group, &mut out)?;
        }
        Ok(out)
    }

    /// The three calls with one read of the history: the intersection and the joint sample over
    /// it come from the same [`History`] (its rows do not depend on the parameters read), so the
    /// result is that of [`sample_in_parts`] without its second pass over the trials.
    fn sample_all_noted(
        &self,
        ctx: &SamplingContext<'_>,
        space: &SearchSpace,
    ) -> Result<(BTreeMap<String, ParamValue>, TrialNotes)> {
        if !self.config.multivariate || self.config.group || self.in_startup(ctx) {
            return sample_in_parts(self, ctx, space);
        }
        let mut params: Vec<(&str, &Distribution)> = space.iter().filter(|(_, d)| !d.is_single()).collect();
        params.sort_by(|a, b| a.0.cmp(b.0));
        let mut relative = BTreeMap::new();
        if !params.is_empty() {
            let history = self.history(ctx, &params);
            let joint = history.intersection();
            if !joint.is_empty() {
                self.sample_group_into(ctx, &history, &params, &joint, &mut relative)?;
            }
        }
        Ok((sample_rest_independently(self, ctx, space, relative)?, TrialNotes::new()))
    }

    fn sample_independent(&self, ctx: &SamplingContext<'_>, name: &str, distribution: &Distribution) -> Result<ParamValue> {
        if distribution.is_single() {
            return Ok(single_value(distribution));
        }
        if self.in_startup(ctx) {
            return RandomSampler.sample_independent(ctx, name, distribution);
        }
        Ok(self.sample_one(ctx, name, distribution))
    }
}

#[cfg(test)]
mod tests;
