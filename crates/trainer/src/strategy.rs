//! Freeze strategies: which parts of a network train in which epoch, and at what learning rate.
//!
//! A network is seen as parts, bottom to top: the stem (part 0), stages 1 to S (parts 1..=S, the numbering
//! of `depth:K`), the classifier head (part S + 1). [`FreezeStrategy::plan`] is the one place that decides,
//! per epoch, which parts train, each part's learning-rate multiplier and which epochs the warm-up + cosine
//! schedule spans; it is a pure function of (strategy, epoch, epochs, stages). The training loop applies it
//! ([`crate::train::fine_tune`]).
//!
//! | strategy | what trains |
//! | --- | --- |
//! | `full` | everything |
//! | `depth:K` | all but the stem and stages 1..=K (= `freeze_depth: K`; `depth:0` = `full`) |
//! | `linear_probe` | the head only |
//! | `lp_ft` | the head only for the first `lp_fraction` of the epochs, then everything, the schedule restarted (re-warmed) with a fresh optimiser |
//! | `gradual_unfreeze` | the head, and one more part from the top every `unfreeze_every` epochs (stage S, S − 1, …, 1, then the stem) |
//! | `layer_decay:G` | everything; stage i at lr × G^(S − i), the stem at lr × G^S, the head at lr |

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How fine-tuning freezes and unfreezes the network (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreezeStrategy {
    /// Everything trains.
    #[default]
    Full,
    /// The stem and the first K stages are frozen for the whole run (0: nothing).
    Depth(usize),
    /// Only the head trains.
    LinearProbe,
    /// Linear probe for the first `lp_fraction` of the epochs, then full fine-tuning with the schedule restarted.
    LpFt {
        /// Share of the epochs spent probing, in (0, 1); rounded to whole epochs, at least one per phase.
        lp_fraction: f64,
    },
    /// The head first, then one more part from the top every `every` epochs.
    GradualUnfreeze {
        /// Epochs between two unfreezings; at least 1.
        every: usize,
    },
    /// Nothing frozen; stage i's learning rate is multiplied by G^(stages − i).
    LayerDecay(f64),
}

/// The names [`FreezeStrategy::from_str`] accepts, as an error message lists them.
pub const FREEZE_STRATEGIES: [&str; 6] = ["full", "depth:K", "linear_probe", "lp_ft", "gradual_unfreeze", "layer_decay:G"];

/// `lp_ft`'s default share of the epochs spent probing.
pub const DEFAULT_LP_FRACTION: f64 = 0.5;

/// What one epoch does, per part (index 0 the stem, 1..=S the stages, S + 1 the head).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochPlan {
    /// Whether each part trains: a frozen part gets no gradient (so no optimiser state) and its BatchNorm
    /// layers normalise with their running statistics.
    pub trainable: Vec<bool>,
    /// Each part's learning-rate multiplier (1 for frozen parts, which take no step anyway).
    pub lr_scale: Vec<f64>,
    /// The epochs (0-based) one warm-up + cosine schedule spans. An epoch that starts a later phase
    /// restarts the schedule and the optimiser.
    pub phase: Range<usize>,
}

impl EpochPlan {
    /// True when `epoch` (0-based) begins a phase after the first: the optimiser starts afresh.
    pub fn restarts_at(&self, epoch: usize) -> bool {
        epoch > 0 && self.phase.start == epoch
    }
}

impl FreezeStrategy {
    /// What epoch `epoch` (0-based, below `epochs`) trains, for a network with `stages` stages.
    pub fn plan(&self, epoch: usize, epochs: usize, stages: usize) -> EpochPlan {
        let parts = stages + 2;
        let head = stages + 1;
        let whole = 0..epochs;
        let (trainable, phase): (Vec<bool>, Range<usize>) = match *self {
            FreezeStrategy::Full | FreezeStrategy::Depth(0) | FreezeStrategy::LayerDecay(_) => (vec![true; parts], whole),
            FreezeStrategy::Depth(k) => ((0..parts).map(|p| p > k.min(stages)).collect(), whole),
            FreezeStrategy::LinearProbe => ((0..parts).map(|p| p == head).collect(), whole),
            FreezeStrategy::LpFt { lp_fraction } => {
                let probe = lp_epochs(lp_fraction, epochs);
                if epoch < probe {
                    ((0..parts).map(|p| p == head).collect(), 0..probe)
                } else {
                    (vec![true; parts], probe..epochs)
                }
            }
            FreezeStrategy::GradualUnfreeze { every } => {
                // Parts below the head unfrozen so far, from the top; the stem is the last of them.
                let unfrozen = (epoch / every.max(1)).min(stages + 1);
                ((0..parts).map(|p| p == head || p + unfrozen > stages).collect(), whole)
            }
        };
        let lr_scale = match *self {
            FreezeStrategy::LayerDecay(g) => {
                (0..parts).map(|p| if p == head { 1.0 } else { g.powi((stages - p) as i32) }).collect()
            }
            _ => vec![1.0; parts],
        };
        EpochPlan { trainable, lr_scale, phase }
    }

    /// Checks the strategy against a network with `stages` stages trained for `epochs` epochs.
    pub fn validate(&self, stages: usize, epochs: usize) -> Result<()> {
        match *self {
            FreezeStrategy::Depth(k) if k > stages => Err(Error::config(
                "freeze_strategy",
                format!("`depth:{k}` but the model has {stages} stages (valid: depth:0 to depth:{stages})"),
            )),
            FreezeStrategy::LayerDecay(g) if !(g > 0.0 && g <= 1.0) => {
                Err(Error::config("freeze_strategy", format!("`layer_decay:{g}`: G must be in (0, 1]")))
            }
            FreezeStrategy::LpFt { lp_fraction } if !(lp_fraction > 0.0 && lp_fraction < 1.0) => {
                Err(Error::config("lp_fraction", format!("must be in (0, 1), got {lp_fraction}")))
            }
            FreezeStrategy::LpFt { .. } if epochs < 2 => Err(Error::config(
                "freeze_strategy",
                format!("`lp_ft` needs at least 2 epochs (one to probe, one to fine-tune), got {epochs}"),
            )),
            FreezeStrategy::GradualUnfreeze { every: 0 } => Err(Error::config("unfreeze_every", "must be at least 1")),
            _ => Ok(()),
        }
    }
}

/// Epochs of `lp_ft`'s probing phase: `lp_fraction` of them rounded, leaving at least one to each phase.
fn lp_epochs(lp_fraction: f64, epochs: usize) -> usize {
    ((lp_fraction * epochs as f64).round() as usize).clamp(1, epochs.saturating_sub(1).max(1))
}

impl fmt::Display for FreezeStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreezeStrategy::Full => f.write_str("full"),
            FreezeStrategy::Depth(k) => write!(f, "depth:{k}"),
            FreezeStrategy::LinearProbe => f.write_str("linear_probe"),
            FreezeStrategy::LpFt { .. } => f.write_str("lp_ft"),
            FreezeStrategy::GradualUnfreeze { .. } => f.write_str("gradual_unfreeze"),
            FreezeStrategy::LayerDecay(g) => write!(f, "layer_decay:{g}"),
        }
    }
}

/// Parses `full`, `depth:K`, `linear_probe`, `lp_ft`, `gradual_unfreeze`, `layer_decay:G`, with the
/// defaults `lp_fraction` 0.5 and `unfreeze_every` 1 (the hyperparameters of those names override them).
/// K against the model's stages is checked by [`FreezeStrategy::validate`].
impl FromStr for FreezeStrategy {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let (name, arg) = match text.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (text, None),
        };
        let refuse = |why: String| Error::config("freeze_strategy", format!("`{text}`: {why}"));
        let strategy = match (name, arg) {
            ("full", None) => FreezeStrategy::Full,
            ("linear_probe", None) => FreezeStrategy::LinearProbe,
            ("lp_ft", None) => FreezeStrategy::LpFt { lp_fraction: DEFAULT_LP_FRACTION },
            ("gradual_unfreeze", None) => FreezeStrategy::GradualUnfreeze { every: 1 },
            ("full" | "linear_probe" | "lp_ft" | "gradual_unfreeze", Some(_)) => {
                return Err(refuse(format!(
                    "`{name}` takes no argument (lp_ft and gradual_unfreeze take theirs from the hyperparameters lp_fraction and unfreeze_every)"
                )));
            }
            ("depth", arg) => match arg.map(str::parse::<usize>) {
                Some(Ok(k)) => FreezeStrategy::Depth(k),
                _ => return Err(refuse("needs the number of frozen stages, `depth:K` with K a whole number ≥ 0".into())),
            },
            ("layer_decay", arg) => match arg.map(str::parse::<f64>) {
                Some(Ok(g)) => FreezeStrategy::LayerDecay(g),
                _ => return Err(refuse("needs the decay factor, `layer_decay:G` with 0 < G ≤ 1".into())),
            },
            _ => {
                let names: Vec<&str> = FREEZE_STRATEGIES.iter().map(|s| s.split(':').next().unwrap_or(s)).collect();
                let hint =
                    crate::config::did_you_mean(name, &names).map(|n| format!(": did you mean `{n}`?")).unwrap_or_default();
                return Err(Error::config(
                    "freeze_strategy",
                    format!("unknown freeze strategy `{text}`{hint} (valid: {})", FREEZE_STRATEGIES.join(", ")),
                ));
            }
        };
        // G's range does not depend on the model, so it is refused here already.
        strategy.validate(usize::MAX, 2).map(|()| strategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> FreezeStrategy {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn refused(text: &str) -> String {
        match text.parse::<FreezeStrategy>() {
            Err(Error::InvalidConfig { field, reason }) => {
                assert_eq!(field, "freeze_strategy", "{reason}");
                reason
            }
            other => panic!("{text}: not refused: {other:?}"),
        }
    }

    /// Trainable parts of every epoch, as strings like "..H" (stem, stages…, head; `.` frozen, letter trains).
    fn schedule(strategy: FreezeStrategy, epochs: usize, stages: usize) -> Vec<String> {
        (0..epochs)
            .map(|e| strategy.plan(e, epochs, stages).trainable.iter().map(|&t| if t { 'T' } else { '.' }).collect())
            .collect()
    }

    #[test]
    fn names_round_trip() {
        for text in
            ["full", "depth:0", "depth:3", "linear_probe", "lp_ft", "gradual_unfreeze", "layer_decay:0.75", "layer_decay:1"]
        {
            assert_eq!(parse(text).to_string(), text);
        }
        assert_eq!(parse("lp_ft"), FreezeStrategy::LpFt { lp_fraction: 0.5 });
        assert_eq!(parse("gradual_unfreeze"), FreezeStrategy::GradualUnfreeze { every: 1 });
        assert_eq!(parse("depth:2"), FreezeStrategy::Depth(2));
    }

    #[test]
    fn bad_strings_say_what_is_valid() {
        let r = refused("lp-ft");
        assert!(r.contains("unknown freeze strategy `lp-ft`: did you mean `lp_ft`?"), "{r}");
        assert!(r.contains("valid: full, depth:K, linear_probe, lp_ft, gradual_unfreeze, layer_decay:G"), "{r}");
        assert!(refused("linear_prob").contains("did you mean `linear_probe`?"));
        assert!(!refused("banana").contains("did you mean"));
        assert!(refused("depth").contains("depth:K"));
        assert!(refused("depth:-1").contains("whole number"));
        assert!(refused("depth:two").contains("whole number"));
        assert!(refused("layer_decay").contains("0 < G ≤ 1"));
        assert!(refused("layer_decay:0").contains("(0, 1]"));
        assert!(refused("layer_decay:1.5").contains("(0, 1]"));
        assert!(refused("layer_decay:-0.5").contains("(0, 1]"));
        assert!(refused("layer_decay:NaN").contains("(0, 1]"));
        assert!(refused("full:1").contains("takes no argument"));
        assert!(refused("").contains("unknown freeze strategy"));
    }

    #[test]
    fn validation_against_the_model_and_the_epochs() {
        assert!(parse("depth:3").validate(3, 1).is_ok());
        let e = parse("depth:99").validate(3, 1).unwrap_err().to_string();
        assert!(e.contains("`depth:99` but the model has 3 stages (valid: depth:0 to depth:3)"), "{e}");
        assert!(parse("lp_ft").validate(3, 1).unwrap_err().to_string().contains("at least 2 epochs"));
        assert!(parse("lp_ft").validate(3, 2).is_ok());
        let e = FreezeStrategy::LpFt { lp_fraction: 1.0 }.validate(3, 5).unwrap_err();
        assert!(matches!(&e, Error::InvalidConfig { field, .. } if field == "lp_fraction"), "{e}");
        let e = FreezeStrategy::GradualUnfreeze { every: 0 }.validate(3, 5).unwrap_err();
        assert!(matches!(&e, Error::InvalidConfig { field, .. } if field == "unfreeze_every"), "{e}");
    }

    #[test]
    fn full_depth_and_linear_probe_are_the_same_every_epoch() {
        assert_eq!(schedule(FreezeStrategy::Full, 3, 2), ["TTTT"; 3]);
        assert_eq!(schedule(FreezeStrategy::Depth(0), 2, 2), ["TTTT"; 2]);
        assert_eq!(schedule(FreezeStrategy::Depth(1), 2, 2), ["..TT"; 2]);
        assert_eq!(schedule(FreezeStrategy::Depth(2), 2, 2), ["...T"; 2]);
        assert_eq!(schedule(FreezeStrategy::Depth(9), 1, 2), ["...T"], "never the head, even out of range");
        assert_eq!(schedule(FreezeStrategy::LinearProbe, 2, 3), ["....T"; 2]);
        for strategy in [FreezeStrategy::Full, FreezeStrategy::Depth(1), FreezeStrategy::LinearProbe] {
            let plan = strategy.plan(1, 4, 2);
            assert_eq!((plan.restarts_at(1), plan.lr_scale, plan.phase), (false, vec![1.0; 4], 0..4));
        }
    }

    #[test]
    fn lp_ft_probes_then_fine_tunes_with_a_restarted_schedule() {
        let lp_ft = |f| FreezeStrategy::LpFt { lp_fraction: f };
        assert_eq!(schedule(lp_ft(0.5), 4, 2), ["...T", "...T", "TTTT", "TTTT"]);
        let plans: Vec<EpochPlan> = (0..4).map(|e| lp_ft(0.5).plan(e, 4, 2)).collect();
        assert_eq!(plans.iter().map(|p| p.phase.clone()).collect::<Vec<_>>(), [0..2, 0..2, 2..4, 2..4]);
        assert_eq!((0..4).map(|e| plans[e].restarts_at(e)).collect::<Vec<_>>(), [false, false, true, false]);
        assert!(plans.iter().all(|p| p.lr_scale == [1.0; 4]));
        // Rounded, and each phase keeps at least one epoch.
        assert_eq!(schedule(lp_ft(0.3), 10, 1).iter().filter(|s| *s == "..T").count(), 3);
        assert_eq!(schedule(lp_ft(0.01), 5, 1), ["..T", "TTT", "TTT", "TTT", "TTT"]);
        assert_eq!(schedule(lp_ft(0.99), 5, 1), ["..T", "..T", "..T", "..T", "TTT"]);
        assert_eq!(schedule(lp_ft(0.5), 2, 1), ["..T", "TTT"]);
    }

    #[test]
    fn gradual_unfreeze_adds_one_part_from_the_top() {
        let every = |n| FreezeStrategy::GradualUnfreeze { every: n };
        assert_eq!(schedule(every(1), 6, 3), ["....T", "...TT", "..TTT", ".TTTT", "TTTTT", "TTTTT"]);
        assert_eq!(schedule(every(2), 6, 2), ["...T", "...T", "..TT", "..TT", ".TTT", ".TTT"]);
        // Frozen below the unfrozen stages: the same parts as depth:K, until only the stem is left.
        assert_eq!(schedule(every(1), 2, 3)[1], schedule(FreezeStrategy::Depth(2), 1, 3)[0]);
        let plan = every(1).plan(3, 6, 3);
        assert_eq!((plan.phase, plan.lr_scale), (0..6, vec![1.0; 5]));
    }

    #[test]
    fn layer_decay_scales_each_stage_and_freezes_nothing() {
        let plan = FreezeStrategy::LayerDecay(0.5).plan(0, 3, 3);
        assert_eq!(plan.trainable, [true; 5]);
        // stem G^3, stage 1 G^2, stage 2 G, stage 3 1, head 1.
        assert_eq!(plan.lr_scale, [0.125, 0.25, 0.5, 1.0, 1.0]);
        assert_eq!(plan.phase, 0..3);
        assert_eq!(FreezeStrategy::LayerDecay(1.0).plan(2, 3, 7).lr_scale, [1.0; 9]);
        assert_eq!(FreezeStrategy::LayerDecay(0.8).plan(0, 1, 0).lr_scale, [1.0, 1.0], "no stages: stem G^0");
    }
}
