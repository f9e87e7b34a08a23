//! The two-stage shutdown parameter of [`super::run`]: a first request drains, a second kills.

use std::sync::Arc;

use tokio::sync::watch;

/// How far a shutdown has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShutdownLevel {
    /// No shutdown asked for.
    None,
    /// Stop launching; running trials finish.
    Drain,
    /// Stop running trials too (recorded FAIL "interrupted" and re-enqueued).
    Kill,
}

/// The shutdown parameter of [`run`](crate::run()): two-stage, so a first Ctrl-C drains and a second kills.
pub struct Shutdown(watch::Receiver<ShutdownLevel>);

/// The sending half of a [`Shutdown`].
#[derive(Clone)]
pub struct ShutdownTrigger(Arc<watch::Sender<ShutdownLevel>>);

impl Shutdown {
    /// A shutdown and the trigger that raises it.
    pub fn channel() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(ShutdownLevel::None);
        (ShutdownTrigger(Arc::new(tx)), Shutdown(rx))
    }

    /// A shutdown that never comes.
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(ShutdownLevel::None);
        std::mem::forget(tx);
        Shutdown(rx)
    }

    /// Drains when `drain` completes, kills when `kill` completes afterwards.
    pub fn from_futures(
        drain: impl Future<Output = ()> + Send + 'static,
        kill: impl Future<Output = ()> + Send + 'static,
    ) -> Shutdown {
        let (trigger, shutdown) = Self::channel();
        tokio::spawn(async move {
            drain.await;
            trigger.set(ShutdownLevel::Drain);
            kill.await;
            trigger.set(ShutdownLevel::Kill);
        });
        shutdown
    }
}

impl Shutdown {
    /// The next level asked for; `None` once no trigger is left (no shutdown can come any more).
    pub(super) async fn next_level(&mut self) -> Option<ShutdownLevel> {
        self.0.changed().await.ok()?;
        Some(*self.0.borrow())
    }
}

impl ShutdownTrigger {
    /// Raises the shutdown to `level`; a lower level than the current one is ignored.
    pub fn set(&self, level: ShutdownLevel) {
        self.0.send_if_modified(|current| {
            let raise = level > *current;
            if raise {
                *current = level;
            }
            raise
        });
    }

    /// Drain on the first call, kill on the second (what Ctrl-C does); returns the new level.
    pub fn escalate(&self) -> ShutdownLevel {
        let next = match *self.0.borrow() {
            ShutdownLevel::None => ShutdownLevel::Drain,
            _ => ShutdownLevel::Kill,
        };
        self.set(next);
        next
    }
}
