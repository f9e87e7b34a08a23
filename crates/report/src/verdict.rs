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
    /// The best arm, when it beats every other arm that ran, and every arm that ran was judged.
    pub winner: Option<usize>,
    /// The best arm and every judged arm it does not beat, when it does not beat them all.
    pub tied: Vec<usize>,
    /// The best arm against each other arm with at least two replicates.
    pub pairwise: Vec<Pairwise>,
    /// Arms that ran (some trial of theirs completed) but have fewer than two completed replicates:
    /// they cannot be judged, so no winner is named while one exists.
    pub unjudged: Vec<usize>,
    /// Arms none of whose trials completed: out of the running (a strategy that cannot run loses),
    /// and named with the verdict.
    pub never_ran: Vec<usize>,
}

/// One arm as the verdict sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArmOutcome {
    /// The values of its completed replicates.
    pub replicates: Vec<f64>,
    /// Whether any of its trials (search or replicate) completed.
    pub ran: bool,
}

impl ArmOutcome {
    /// An arm known by its replicates alone: it ran when one of them completed.
    pub fn from_replicates(replicates: Vec<f64>) -> Self {
        ArmOutcome { ran: !replicates.is_empty(), replicates }
    }
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
    let se = stats::welch_standard_error(a, b);
    let half = if se == 0.0 { 0.0 } else { stats::t_quantile_two_sided(0.05, df) * se };
    Some((diff, (diff - half, diff + half), p))
}

/// The verdict over `arms`, for an objective maximised or minimised. An arm none of whose trials
/// completed is out of the running; one that ran with fewer than two replicates cannot be judged.
pub fn verdict(arms: &[ArmOutcome], direction: Direction) -> Verdict {
    let values = |i: usize| arms[i].replicates.as_slice();
    let judged: Vec<usize> = (0..arms.len()).filter(|&i| values(i).len() >= 2).collect();
    let unjudged: Vec<usize> = (0..arms.len()).filter(|&i| values(i).len() < 2 && arms[i].ran).collect();
    let never_ran: Vec<usize> = (0..arms.len()).filter(|&i| values(i).len() < 2 && !arms[i].ran).collect();
    let best = judged.iter().copied().min_by(|&a, &b| {
        direction.to_loss(stats::mean(values(a))).total_cmp(&direction.to_loss(stats::mean(values(b)))).then(a.cmp(&b))
    });
    let Some(b) = best else {
        return Verdict { best: None, winner: None, tied: Vec::new(), pairwise: Vec::new(), unjudged, never_ran };
    };
    let mut pairwise: Vec<Pairwise> = judged
        .iter()
        .filter(|&&o| o != b)
        .filter_map(|&o| {
            let (diff, ci95, p) = welch_interval(values(b), values(o))?;
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
    let leads = !pairwise.is_empty() && pairwise.iter().all(|c| c.beaten);
    let winner = (leads && unjudged.is_empty()).then_some(b);
    let tied = if leads {
        Vec::new()
    } else {
        std::iter::once(b).chain(pairwise.iter().filter(|c| !c.beaten).map(|c| c.other)).collect()
    };
    Verdict { best, winner, tied, pairwise, unjudged, never_ran }
}

/// The verdict in words, with the arms' labels: "winner: X", "tie between X and Y", or "no verdict:
/// …" while an arm that ran cannot be judged; arms that never ran are named after it.
pub fn verdict_text(v: &Verdict, labels: &[String]) -> String {
    let names = |arms: &[usize]| -> String {
        let names: Vec<&str> = arms.iter().map(|&i| labels[i].as_str()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.concat(),
        }
    };
    let method = format!("Welch t-tests with Holm's correction, α = {ALPHA}");
    let judged = match (v.best, v.tied.as_slice()) {
        (None, _) => "no arm has two completed replicates".to_string(),
        (Some(b), []) => format!("{} beats every other arm on the replicates ({method})", labels[b]),
        (_, [only]) => format!("only {} has two completed replicates", labels[*only]),
        (_, tied) => format!("tie between {} (the replicates do not separate them: {method})", names(tied)),
    };
    let mut text = match v.winner {
        Some(w) => format!("winner: {} (beats every other arm on the replicates, {method})", labels[w]),
        None if v.unjudged.is_empty() && v.tied.len() >= 2 => judged,
        None if v.unjudged.is_empty() => format!("no verdict yet: {judged}"),
        None => format!(
            "no verdict: {} cannot be judged (fewer than two completed replicates); among the other arms, {judged}",
            names(&v.unjudged)
        ),
    };
    if !v.never_ran.is_empty() {
        text.push_str(&format!("; {} never completed a trial (out of the running)", names(&v.never_ran)));
    }
    text
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

    fn arms(values: &[&[f64]]) -> Vec<ArmOutcome> {
        values.iter().map(|v| ArmOutcome::from_replicates(v.to_vec())).collect()
    }

    #[test]
    fn a_clear_winner_is_named_and_close_arms_tie() {
        let clear = arms(&[&[0.80, 0.81, 0.79], &[0.90, 0.91, 0.89], &[0.70, 0.71, 0.69]]);
        let v = verdict(&clear, Direction::Maximize);
        assert_eq!((v.best, v.winner), (Some(1), Some(1)));
        assert!(v.pairwise.iter().all(|c| c.beaten && c.ci95.0 > 0.0), "{v:?}");
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert!(verdict_text(&v, &labels).starts_with("winner: b"));
        // The same values minimised: arm 2 wins.
        assert_eq!(verdict(&clear, Direction::Minimize).winner, Some(2));

        let close = arms(&[&[0.80, 0.85, 0.75], &[0.82, 0.86, 0.78], &[0.50, 0.51, 0.49]]);
        let v = verdict(&close, Direction::Maximize);
        assert_eq!((v.best, v.winner, v.tied.clone()), (Some(1), None, vec![1, 0]));
        assert_eq!(verdict_text(&v, &labels).split(" (").next(), Some("tie between b and a"));
    }

    #[test]
    fn arms_that_ran_without_two_replicates_withhold_the_verdict_and_arms_that_never_ran_are_named() {
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        // Found by an audit: an arm whose search trial was the study's best but whose replicates all
        // failed let another arm be named "winner", and one replicate forced a "tie" with a far worse arm.
        for b in [ArmOutcome { replicates: vec![], ran: true }, ArmOutcome { replicates: vec![0.1], ran: true }] {
            let three = vec![ArmOutcome::from_replicates(vec![0.9, 0.91]), b, ArmOutcome::from_replicates(vec![0.5, 0.52])];
            let v = verdict(&three, Direction::Maximize);
            assert_eq!((v.winner, v.unjudged.clone(), v.tied.clone()), (None, vec![1], vec![]), "{v:?}");
            assert_eq!(
                verdict_text(&v, &labels).split(" (Welch").next(),
                Some(
                    "no verdict: b cannot be judged (fewer than two completed replicates); among the other arms, a beats every other arm on the replicates"
                )
            );
        }
        // An arm none of whose trials completed is out of the running, and said to be.
        let v = verdict(&arms(&[&[0.9, 0.91], &[], &[0.5, 0.52]]), Direction::Maximize);
        assert_eq!((v.winner, v.never_ran.clone()), (Some(0), vec![1]));
        let text = verdict_text(&v, &labels);
        assert!(text.starts_with("winner: a") && text.ends_with("; b never completed a trial (out of the running)"), "{text}");

        let v = verdict(&arms(&[&[0.9], &[]]), Direction::Maximize);
        assert_eq!((v.best, v.winner), (None, None));
        assert_eq!(
            verdict_text(&v, &labels),
            "no verdict: a cannot be judged (fewer than two completed replicates); among the other arms, no arm has two \
             completed replicates; b never completed a trial (out of the running)"
        );
        let v = verdict(&arms(&[&[0.9, 0.8], &[]]), Direction::Maximize);
        assert!(verdict_text(&v, &labels).starts_with("no verdict yet: only a has two completed replicates"));
    }
}
