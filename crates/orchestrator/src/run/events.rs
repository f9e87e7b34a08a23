//! What a run tells a display: [`Event`]s, sent to an [`Observer`] (the binary draws them).

use nightshift_search::{FrozenTrial, StudyRecord};

use super::StopReason;
use crate::pool::Slot;

/// Called with the study and all its trials every few finished trials and at the end (the CLI
/// renders the report with it; the orchestrator does not know the report crate).
pub type ReportHook = std::sync::Arc<dyn Fn(&StudyRecord, &[FrozenTrial]) + Send + Sync>;

/// What happens during a run, for progress displays.
#[derive(Debug)]
pub enum Event<'a> {
    Started { study: &'a StudyRecord, slots: &'a [Slot], budget: u64, used: u64, stale: &'a [u64] },
    TrialStarted { slot: &'a Slot, trial: &'a FrozenTrial },
    TrialReport { slot: &'a Slot, number: u64, step: u64, value: f64 },
    TrialFinished { slot: &'a Slot, trial: &'a FrozenTrial },
    Stopping { reason: &'a StopReason },
    Notice(&'a str),
}

/// Receives [`Event`]s (from several threads).
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// Ignores everything.
pub struct NoObserver;

impl Observer for NoObserver {
    fn event(&self, _event: &Event<'_>) {}
}
