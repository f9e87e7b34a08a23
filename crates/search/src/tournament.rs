//! A budget-matched tournament between the values ("arms") of one parameter.
//!
//! Each arm gets the same number of search trials, with the parameter fixed to the arm's value and the
//! other parameters tuned from that arm's own history (the sampler and the pruner see only the arm's search
//! trials). When every arm has used its budget, each arm's `replicate_top` best configurations are re-run
//! with `seeds` fresh seeds: the replicates, never pruned, from which the verdict is drawn.
//!
//! Everything here is a pure function of the study's trials, so any number of workers (and a resumed run)
//! agree on it without talking to one another. A trial's role (search or replicate) is written in the same
//! atomic step that creates it ([`attrs::TOURNAMENT_ROLE`]); its place in the tournament is its rank by
//! number among the trials of that role, and the storage gives every number out once. So the k-th search
//! trial is arm `k mod arms` whoever creates it, and the storage's atomic trial budget
//! ([`crate::NewTrial::max_trials`], from [`Tournament::max_trials`]) stops the k past the end.
//! Re-runs of failed trials (with [`attrs::RETRY_OF`]) take the place of the trial they retry.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::sampler::mix_seed;
use crate::space::ParamValue;
use crate::storage::attrs;
use crate::trial::{Direction, FrozenTrial, TrialState};

/// A tournament as configured (`compare: {param, budget_per_arm, replicate_top, seeds}`); stored with the
/// study ([`attrs::STUDY_TOURNAMENT`]) so reports and workers know it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tournament {
    /// The compared parameter.
    pub param: String,
    /// Its values, one arm each, in the search space's order.
    pub arms: Vec<ParamValue>,
    /// Search trials per arm.
    pub budget_per_arm: u64,
    /// Configurations per arm that are replicated.
    pub replicate_top: u64,
    /// Fresh seeds per replicated configuration (at least 2: one run says nothing about noise).
    pub seeds: u64,
}

/// What a tournament trial is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Tunes its arm's other parameters.
    Search,
    /// Re-runs an arm's best configuration with a fresh seed.
    Replicate,
}

impl Role {
    /// The value stored under [`attrs::TOURNAMENT_ROLE`].
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Search => "search",
            Role::Replicate => "replicate",
        }
    }

    /// The role of a trial, if it belongs to a tournament.
    pub fn of(trial: &FrozenTrial) -> Option<Role> {
        match trial.system_attrs.get(attrs::TOURNAMENT_ROLE)?.as_str()? {
            "search" => Some(Role::Search),
            "replicate" => Some(Role::Replicate),
            _ => None,
        }
    }
}

/// What to do next, from the study's trials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Launch a trial: claim a re-run if one waits, else create one of this role.
    Launch(Role),
    /// Nothing to launch until running trials finish (the replicates wait for the last search trials).
    Wait,
    /// Every search trial and every replicate has been launched.
    Done,
}

/// What a newly created tournament trial runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Assignment {
    /// A search trial of this arm (an index into [`Tournament::arms`]).
    Search {
        /// The arm.
        arm: usize,
    },
    /// A replicate of search trial `source`, the `seed_index`-th of its seeds.
    Replicate {
        /// The search trial whose parameters it runs again.
        source: u64,
        /// Which of its `seeds` runs this is.
        seed_index: u64,
    },
    /// Past the tournament's end (another worker took the last place first).
    Over,
}

/// The seed a trial runs with: a function of the study's seed and the trial's number, so every trial has its
/// own, a replicate (a new trial) gets a fresh one, and a resumed study gives the same trial the same seed.
pub fn trial_seed(study_seed: u64, number: u64) -> u64 {
    // Kept below 2^53 so it survives JSON readers that parse numbers as doubles (Python, JavaScript).
    mix_seed(study_seed, number, "trial-seed") >> 11
}

impl Tournament {
    /// Search trials in all: `budget_per_arm` × arms.
    pub fn search_budget(&self) -> u64 {
        self.budget_per_arm * self.arms.len() as u64
    }

    /// Replicates when every arm has at least `replicate_top` completed search trials.
    pub fn max_replicates(&self) -> u64 {
        self.replicate_top * self.seeds * self.arms.len() as u64
    }

    /// The arm of a trial (by its value of the compared parameter).
    pub fn arm_of(&self, trial: &FrozenTrial) -> Option<usize> {
        let value = trial.params.get(&self.param)?;
        self.arms.iter().position(|a| a == value)
    }

    /// Whether `trial` is a search trial of `arm`: what that arm's sampler and pruner see.
    pub fn in_arm(&self, trial: &FrozenTrial, arm: usize) -> bool {
        Role::of(trial) == Some(Role::Search) && self.arm_of(trial) == Some(arm)
    }

    /// The search trials whose configurations are replicated, as (arm, trial number): per arm its
    /// `replicate_top` best COMPLETE search trials (ties to the lower number), arms in order.
    pub fn replicate_sources(&self, trials: &[FrozenTrial], direction: Direction) -> Vec<(usize, u64)> {
        let mut sources = Vec::new();
        for arm in 0..self.arms.len() {
            let mut ranked: Vec<&FrozenTrial> = trials
                .iter()
                .filter(|t| self.in_arm(t, arm) && t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite))
                .collect();
            ranked.sort_by(|a, b| {
                let loss = |t: &FrozenTrial| direction.to_loss(t.value.unwrap_or(f64::NAN));
                loss(a).total_cmp(&loss(b)).then(a.number.cmp(&b.number))
            });
            sources.extend(ranked.iter().take(self.replicate_top as usize).map(|t| (arm, t.number)));
        }
        sources
    }

    /// What to do next. Search trials come first; replicates once every search trial has finished (their
    /// configurations depend on all of them).
    pub fn next(&self, trials: &[FrozenTrial], direction: Direction) -> Step {
        if let Some(waiting) = trials.iter().find(|t| t.state == TrialState::Waiting) {
            return Step::Launch(Role::of(waiting).unwrap_or(Role::Search));
        }
        if fresh(trials, Role::Search).count() < self.search_budget() as usize {
            return Step::Launch(Role::Search);
        }
        if trials.iter().any(|t| Role::of(t) == Some(Role::Search) && t.state == TrialState::Running) {
            return Step::Wait;
        }
        let replicates = self.replicate_sources(trials, direction).len() as u64 * self.seeds;
        if (fresh(trials, Role::Replicate).count() as u64) < replicates {
            return Step::Launch(Role::Replicate);
        }
        Step::Done
    }

    /// What trial `number`, just created with `role`, runs: its rank among the fresh trials of its role.
    pub fn assign(&self, trials: &[FrozenTrial], number: u64, role: Role, direction: Direction) -> Assignment {
        let index = fresh(trials, role).filter(|t| t.number < number).count() as u64;
        match role {
            Role::Search if index < self.search_budget() => Assignment::Search { arm: (index % self.arms.len() as u64) as usize },
            Role::Search => Assignment::Over,
            Role::Replicate => {
                // Round-robin over the configurations, so a run cut short leaves the arms with equal seeds.
                let sources = self.replicate_sources(trials, direction);
                let configs = sources.len() as u64;
                if configs == 0 || index >= configs * self.seeds {
                    return Assignment::Over;
                }
                Assignment::Replicate { source: sources[(index % configs) as usize].1, seed_index: index / configs }
            }
        }
    }

    /// The storage-wide trial cap for creating a trial of `role` (see [`crate::NewTrial::max_trials`], which
    /// counts every non-WAITING trial): the search budget, plus the replicates in the replicate phase, plus
    /// trials a re-run replaces and trials outside the tournament. The counts only grow, so an old snapshot
    /// errs on the safe side.
    pub fn max_trials(&self, trials: &[FrozenTrial], role: Role, direction: Direction) -> u64 {
        let replaced: HashSet<u64> = trials.iter().filter_map(|t| t.system_attrs.get(attrs::RETRY_OF)?.as_u64()).collect();
        let outside = trials
            .iter()
            .filter(|t| t.state != TrialState::Waiting && (replaced.contains(&t.number) || Role::of(t).is_none()))
            .count() as u64;
        let replicates = match role {
            Role::Search => 0,
            Role::Replicate => self.replicate_sources(trials, direction).len() as u64 * self.seeds,
        };
        self.search_budget() + replicates + outside
    }
}

/// Trials created with `role` that are not re-runs: one per place in the tournament.
fn fresh(trials: &[FrozenTrial], role: Role) -> impl Iterator<Item = &FrozenTrial> {
    trials.iter().filter(move |t| Role::of(t) == Some(role) && !t.system_attrs.contains_key(attrs::RETRY_OF))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tournament() -> Tournament {
        Tournament {
            param: "k".into(),
            arms: vec![ParamValue::Str("a".into()), ParamValue::Str("b".into())],
            budget_per_arm: 2,
            replicate_top: 1,
            seeds: 2,
        }
    }

    fn trial(number: u64, role: Role, state: TrialState, arm: &str, value: Option<f64>) -> FrozenTrial {
        let mut t = FrozenTrial::new(number as i64, number, state);
        t.system_attrs.insert(attrs::TOURNAMENT_ROLE.into(), role.as_str().into());
        t.params.insert("k".into(), ParamValue::Str(arm.into()));
        t.value = value;
        t
    }

    #[test]
    fn search_trials_alternate_arms_by_rank_then_replicates_follow_the_best() {
        let t = tournament();
        let d = Direction::Maximize;
        let mut trials = Vec::new();
        for (n, arm) in ["a", "b", "a", "b"].iter().enumerate() {
            assert_eq!(t.next(&trials, d), Step::Launch(Role::Search));
            let mut new = trial(n as u64, Role::Search, TrialState::Running, arm, None);
            new.params.clear();
            trials.push(new);
            assert_eq!(t.assign(&trials, n as u64, Role::Search, d), Assignment::Search { arm: n % 2 });
            trials[n] = trial(n as u64, Role::Search, TrialState::Running, arm, None);
        }
        assert_eq!(t.next(&trials, d), Step::Wait, "replicates wait for the search trials");
        for (n, v) in [0.5, 0.9, 0.7, 0.1].into_iter().enumerate() {
            trials[n].state = TrialState::Complete;
            trials[n].value = Some(v);
        }
        assert_eq!(t.replicate_sources(&trials, d), [(0, 2), (1, 1)]);
        assert_eq!(t.max_trials(&trials, Role::Replicate, d), 8);
        let want = [(2, 0), (1, 0), (2, 1), (1, 1)];
        for (j, (source, seed_index)) in want.into_iter().enumerate() {
            assert_eq!(t.next(&trials, d), Step::Launch(Role::Replicate));
            let n = 4 + j as u64;
            trials.push(trial(n, Role::Replicate, TrialState::Running, "a", None));
            assert_eq!(t.assign(&trials, n, Role::Replicate, d), Assignment::Replicate { source, seed_index });
        }
        assert_eq!(t.next(&trials, d), Step::Done);
        trials.push(trial(8, Role::Replicate, TrialState::Running, "a", None));
        assert_eq!(t.assign(&trials, 8, Role::Replicate, d), Assignment::Over);
    }

    #[test]
    fn a_retry_takes_its_trials_place_and_is_claimed_first() {
        let t = tournament();
        let d = Direction::Minimize;
        let mut trials: Vec<FrozenTrial> =
            (0..4).map(|n| trial(n, Role::Search, TrialState::Complete, ["a", "b"][n as usize % 2], Some(1.0))).collect();
        trials[1].state = TrialState::Fail;
        let mut retry = trial(4, Role::Search, TrialState::Waiting, "b", None);
        retry.system_attrs.insert(attrs::RETRY_OF.into(), 1.into());
        trials.push(retry);
        assert_eq!(t.next(&trials, d), Step::Launch(Role::Search), "claim the waiting re-run");
        trials[4].state = TrialState::Running;
        assert_eq!(t.next(&trials, d), Step::Wait);
        assert_eq!(t.max_trials(&trials, Role::Search, d), 5, "the failed trial is replaced, not counted");
        trials[4].state = TrialState::Complete;
        trials[4].value = Some(0.5);
        assert_eq!(t.replicate_sources(&trials, d), [(0, 0), (1, 4)]);
    }

    #[test]
    fn an_arm_without_completed_trials_gets_no_replicates() {
        let t = tournament();
        let trials: Vec<FrozenTrial> = (0..4)
            .map(|n| {
                let arm = ["a", "b"][n as usize % 2];
                let state = if arm == "b" { TrialState::Pruned } else { TrialState::Complete };
                trial(n, Role::Search, state, arm, Some(n as f64))
            })
            .collect();
        assert_eq!(t.replicate_sources(&trials, Direction::Maximize), [(0, 2)]);
        assert_eq!(t.max_trials(&trials, Role::Replicate, Direction::Maximize), 6);
    }

    #[test]
    fn trial_seeds_differ_by_number_and_fit_a_double() {
        let seeds: HashSet<u64> = (0..1000).map(|n| trial_seed(42, n)).collect();
        assert_eq!(seeds.len(), 1000);
        assert!(seeds.iter().all(|&s| s < 1 << 53));
        assert_eq!(trial_seed(42, 7), trial_seed(42, 7));
        assert_ne!(trial_seed(42, 7), trial_seed(43, 7));
    }
}
