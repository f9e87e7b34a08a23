//! A tournament's verdict from its replicates: per arm the mean with a 95% confidence interval, the best
//! arm's difference from every other with a Welch interval and p-value, and "winner" only when the best arm
//! beats every other after Holm's correction for the several comparisons; otherwise a tie between the best
//! and the arms it does not beat. Pure functions of the values, so calibration tests can run thousands.

use nightshift_search::Direction;
use serde::Serialize;

use crate::stats;

/// The family-wise error rate of the verdict: the chance of naming a winner among equal arms is at most this.
pub const ALPHA: f64 = 0.05;

/// The best arm against one other.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pairwise {
    /// The other arm (an index into the arms given).
    pub other: usize,
    /// Best arm's mean minus the other's.
    pub diff: f64,
    /// 95% Welch interval of that difference (not adjusted for the several comparisons).
    pub ci95: (f64, f64),
    /// Welch's two-sided p-value.
    pub p: f64,
    /// Holm-adjusted p-value over all the best arm's comparisons.
    pub p_holm: f64,
    /// Whether the best arm beats this one (adjusted p < [`ALPHA`]).
    pub beaten: bool,
}

/// What the replicates say.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The arm with the best mean among arms with at least two replicates.
    pub best: Option<usize>,
    /// The best arm, when it beats every other arm.
    pub winner: Option<usize>,
    /// The best arm and every arm it does not beat, when there is no winner.
    pub tied: Vec<usize>,
    /// The best arm against each other arm with at least two replicates.
    pub pairwise: Vec<Pairwise>,
    /// Arms with exactly one replicate: they cannot be judged, so no winner is named while one exists.
    pub unjudged: Vec<usize>,
}

/// Holm's step-down adjustment: the adjusted p-values, in the order given.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let m = p.len();
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Mean and 95% interval of the best arm's lead over another: Welch's interval with its degrees of freedom.
fn welch_interval(a: &[f64], b: &[f64]) -> Option<(f64, (f64, f64), f64)> {
    let (_, df, p) = stats::welch_t_test(a, b)?;
    let diff = stats::mean(a) - stats::mean(b);
    let se = (stats::variance(a) / a.len() as f64 + stats::variance(b) / b.len() as f64).sqrt();
    let half = if se == 0.0 { 0.0 } else { stats::t_quantile_two_sided(0.05, df) * se };
    Some((diff, (diff - half, diff + half), p))
}

/// The verdict over `arms` (each arm's replicate values), for an objective maximised or minimised.
/// Arms with no replicate (none of their trials completed) have nothing to show and count as beaten.
pub fn verdict(arms: &[Vec<f64>], direction: Direction) -> Verdict {
    let judged: Vec<usize> = (0..arms.len()).filter(|&i| arms[i].len() >= 2).collect();
    let unjudged: Vec<usize> = (0..arms.len()).filter(|&i| arms[i].len() == 1).collect();
    let best = judged.iter().copied().min_by(|&a, &b| {
        direction.to_loss(stats::mean(&arms[a])).total_cmp(&direction.to_loss(stats::mean(&arms[b]))).then(a.cmp(&b))
    });
    let Some(b) = best else { return Verdict { best: None, winner: None, tied: Vec::new(), pairwise: Vec::new(), unjudged } };
    let mut pairwise: Vec<Pairwise> = judged
        .iter()
        .filter(|&&o| o != b)
        .filter_map(|&o| {
            let (diff, ci95, p) = welch_interval(&arms[b], &arms[o])?;
            Some(Pairwise { other: o, diff, ci95, p, p_holm: 1.0, beaten: false })
        })
        .collect();
    let adjusted = holm(&pairwise.iter().map(|c| c.p).collect::<Vec<_>>());
    for (c, p_holm) in pairwise.iter_mut().zip(adjusted) {
        // Better in the objective's direction, and by more than chance allows.
        let ahead = match direction {
            Direction::Maximize => c.diff > 0.0,
            Direction::Minimize => c.diff < 0.0,
        };
        c.p_holm = p_holm;
        c.beaten = ahead && p_holm < ALPHA;
    }
    let everyone_beaten = !pairwise.is_empty() && pairwise.iter().all(|c| c.beaten) && unjudged.is_empty();
    let winner = everyone_beaten.then_some(b);
    let tied = if winner.is_some() {
        Vec::new()
    } else {
        std::iter::once(b).chain(pairwise.iter().filter(|c| !c.beaten).map(|c| c.other)).chain(unjudged.iter().copied()).collect()
    };
    Verdict { best, winner, tied, pairwise, unjudged }
}

/// The verdict in words, with the arms' labels: "winner: X" or "tie between X and Y".
pub fn verdict_text(v: &Verdict, labels: &[String]) -> String {
    if let Some(w) = v.winner {
        return format!(
            "winner: {} (beats every other arm on the replicates, Welch t-tests with Holm's correction, α = {ALPHA})",
            labels[w]
        );
    }
    match v.tied.as_slice() {
        [] => "no verdict yet: no arm has two completed replicates".into(),
        [only] => format!("no verdict yet: only {} has two completed replicates", labels[*only]),
        tied => {
            let names: Vec<&str> = tied.iter().map(|&i| labels[i].as_str()).collect();
            let (last, rest) = names.split_last().expect("two or more");
            format!(
                "tie between {} and {last} (the replicates do not separate them: Welch t-tests with Holm's correction, α = {ALPHA})",
                rest.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_steps_down_and_stays_monotone() {
        // m = 3: 3·0.01, 2·0.02, 1·0.04 → 0.03, 0.04, 0.04.
        let adjusted = holm(&[0.04, 0.01, 0.02]);
        let want = [0.04, 0.03, 0.04];
        for (a, w) in adjusted.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adjusted:?}");
        }
        let adjusted = holm(&[0.02, 0.011]);
        assert!(adjusted.iter().all(|a| (a - 0.022).abs() < 1e-12), "never below an earlier adjusted value: {adjusted:?}");
        assert_eq!(holm(&[0.9, 0.8]), [1.0, 1.0], "capped at 1");
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn a_clear_winner_is_named_and_close_arms_tie() {
        let arms = vec![vec![0.80, 0.81, 0.79], vec![0.90, 0.91, 0.89], vec![0.70, 0.71, 0.69]];
        let v = verdict(&arms, Direction::Maximize);
        assert_eq!((v.best, v.winner), (Some(1), Some(1)));
        assert!(v.pairwise.iter().all(|c| c.beaten && c.ci95.0 > 0.0), "{v:?}");
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert!(verdict_text(&v, &labels).starts_with("winner: b"));
        // The same values minimised: arm 2 wins.
        assert_eq!(verdict(&arms, Direction::Minimize).winner, Some(2));

        let close = vec![vec![0.80, 0.85, 0.75], vec![0.82, 0.86, 0.78], vec![0.50, 0.51, 0.49]];
        let v = verdict(&close, Direction::Maximize);
        assert_eq!((v.best, v.winner, v.tied.clone()), (Some(1), None, vec![1, 0]));
        assert_eq!(verdict_text(&v, &labels).split(" (").next(), Some("tie between b and a"));
    }

    #[test]
    fn arms_without_enough_replicates() {
        let v = verdict(&[vec![0.9, 0.91], vec![], vec![0.5, 0.52]], Direction::Maximize);
        assert_eq!(v.winner, Some(0), "an arm with nothing completed cannot stand in the way");
        let v = verdict(&[vec![0.9, 0.91], vec![0.1], vec![0.5, 0.52]], Direction::Maximize);
        assert_eq!((v.winner, v.unjudged.clone()), (None, vec![1]), "one replicate cannot be judged");
        let v = verdict(&[vec![0.9], vec![]], Direction::Maximize);
        assert_eq!((v.best, v.winner), (None, None));
        assert_eq!(verdict_text(&v, &["a".into(), "b".into()]), "no verdict yet: no arm has two completed replicates");
    }
}
