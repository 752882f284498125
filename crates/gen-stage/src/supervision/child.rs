//! Child specifications, and what a supervisor can do with a running child.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::error::StartError;
use crate::exit::ExitReason;
use crate::handle::StageRef;
use crate::kind::StageKind;

/// Something a supervisor can watch and stop: any stage handle, or another
/// supervisor.
pub trait Supervised: Send + Sync + 'static {
    /// Resolves when the child has stopped, with its reason.
    fn stopped(&self) -> BoxFuture<'static, ExitReason>;
    /// Asks the child to stop with `reason`, without waiting.
    fn request_stop(&self, reason: ExitReason);
    /// The child did not stop within its shutdown's time: drop the work in hand and
    /// stop with [`ExitReason::ShutdownTimedOut`], still running its cleanup. By
    /// default, [`Supervised::kill`].
    fn abandon_work(&self) {
        self.kill();
    }
    /// Aborts the child at once.
    fn kill(&self);
}

impl<K: StageKind> Supervised for StageRef<K> {
    fn stopped(&self) -> BoxFuture<'static, ExitReason> {
        let stage = self.clone();
        Box::pin(async move { stage.stopped().await })
    }

    fn request_stop(&self, reason: ExitReason) {
        let _ = StageRef::request_stop(self, reason);
    }

    fn abandon_work(&self) {
        self.lifecycle().abandon();
    }

    fn kill(&self) {
        StageRef::kill(self);
    }
}

/// When a supervisor restarts a child that stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Restart {
    /// Always (the default).
    #[default]
    Permanent,
    /// Only after an abnormal stop (not `Normal`, `Shutdown` or `CustomShutdown`).
    Transient,
    /// Never.
    Temporary,
}

impl Restart {
    pub(crate) fn restarts_after(self, reason: &ExitReason) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_graceful(),
            Restart::Temporary => false,
        }
    }
}

/// How a supervisor stops a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shutdown {
    /// Ask it to stop with [`ExitReason::Shutdown`]: a stage finishes the batch in
    /// hand, runs `terminate` and stops, without handling what is still queued. If it
    /// has not stopped within the duration (default: 5 seconds), the hook in hand is
    /// dropped and `terminate` runs with [`ExitReason::ShutdownTimedOut`]; if that too
    /// outlasts the duration, the child is aborted.
    Graceful(Duration),
    /// Ask it to stop, and wait as long as it takes (for children that are supervisors).
    Wait,
    /// Abort it at once.
    Kill,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::Graceful(Duration::from_secs(5))
    }
}

impl Shutdown {
    /// Stops `child` by this policy and waits until it has stopped.
    pub(crate) async fn stop(self, child: &dyn Supervised) -> ExitReason {
        let mut stopped = child.stopped();
        match self {
            Shutdown::Kill => child.kill(),
            Shutdown::Wait => child.request_stop(ExitReason::Shutdown),
            Shutdown::Graceful(limit) => {
                child.request_stop(ExitReason::Shutdown);
                if let Ok(reason) = tokio::time::timeout(limit, &mut stopped).await {
                    return reason;
                }
                child.abandon_work();
                if let Ok(reason) = tokio::time::timeout(limit, &mut stopped).await {
                    return reason;
                }
                child.kill();
            }
        }
        stopped.await
    }
}

type StartFn =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Box<dyn Supervised>, StartError>> + Send + Sync>;

/// How to start a child, again and again, and how to treat it.
///
/// The start function is called at every (re)start; it usually builds a stage and
/// starts it. Subscribe by name ([`ConsumerBuilder::subscribe_to_name`]) so that a
/// restarted consumer finds its (restarted) producer.
///
/// [`ConsumerBuilder::subscribe_to_name`]: crate::builder::ConsumerBuilder::subscribe_to_name
#[derive(Clone)]
#[must_use]
pub struct ChildSpec {
    pub(crate) id: String,
    pub(crate) start: StartFn,
    pub(crate) restart: Restart,
    pub(crate) shutdown: Shutdown,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// A permanent child named `id`, started by `start`.
    pub fn new<F, Fut, C>(id: impl Into<String>, start: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<C, StartError>> + Send + 'static,
        C: Supervised,
    {
        let start: StartFn = Arc::new(move || {
            let started = start();
            Box::pin(async move {
                started
                    .await
                    .map(|child| Box::new(child) as Box<dyn Supervised>)
            })
        });
        ChildSpec {
            id: id.into(),
            start,
            restart: Restart::Permanent,
            shutdown: Shutdown::default(),
        }
    }

    /// When to restart it (default [`Restart::Permanent`]).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// How to stop it (default [`Shutdown::Graceful`] with 5 seconds).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// The child's name within its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }
}
