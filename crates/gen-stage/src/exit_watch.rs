//! Where a stage or a supervisor publishes its exit, and how its handles wait for it.

use tokio::sync::watch;

use crate::exit::ExitReason;

/// The publishing side: `send_replace(Some(reason))` once, when the task ends. A task
/// dropped without publishing (killed) reads as [`ExitReason::Killed`].
pub(crate) type ExitSender = watch::Sender<Option<ExitReason>>;

/// A handle's view of an exit: cheap to clone, waited on by any number of handles.
#[derive(Clone, Debug)]
pub(crate) struct ExitWatch(watch::Receiver<Option<ExitReason>>);

/// A publisher and the watch it feeds; nothing published yet.
pub(crate) fn channel() -> (ExitSender, ExitWatch) {
    let (sender, receiver) = watch::channel(None);
    (sender, ExitWatch(receiver))
}

impl ExitWatch {
    /// Waits until the exit is published (or the publisher is dropped without one:
    /// [`ExitReason::Killed`]), and returns it.
    pub(crate) async fn stopped(&self) -> ExitReason {
        let mut exit = self.0.clone();
        let waited = exit
            .wait_for(Option::is_some)
            .await
            .map(|reason| reason.clone());
        match waited {
            Ok(reason) => reason.unwrap_or(ExitReason::Killed),
            Err(_) => exit.borrow().clone().unwrap_or(ExitReason::Killed),
        }
    }

    /// The exit, or `None` while the task runs.
    pub(crate) fn reason(&self) -> Option<ExitReason> {
        let published = self.0.borrow().clone();
        // A killed task publishes nothing: its sender is gone.
        match published {
            None if self.0.has_changed().is_err() => Some(ExitReason::Killed),
            published => published,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_published_reason_is_what_every_watcher_sees() {
        let (sender, watch) = channel();
        let other = watch.clone();
        assert_eq!(watch.reason(), None);
        let waiting = tokio::spawn(async move { other.stopped().await });
        sender.send_replace(Some(ExitReason::Shutdown));
        assert_eq!(waiting.await.ok(), Some(ExitReason::Shutdown));
        assert_eq!(watch.stopped().await, ExitReason::Shutdown);
        assert_eq!(watch.reason(), Some(ExitReason::Shutdown));
    }

    #[tokio::test]
    async fn a_publisher_dropped_without_a_reason_reads_as_killed() {
        let (sender, watch) = channel();
        drop(sender);
        assert_eq!(watch.reason(), Some(ExitReason::Killed));
        assert_eq!(watch.stopped().await, ExitReason::Killed);
    }
}
