//! The [`Supervisor`] of stages and its handle, [`SupervisorRef`]; the module docs of
//! [`supervision`](crate::supervision) are its guide.

mod runner;

use super::child::{ChildSpec, Shutdown, Supervised};
use super::events::ChildEvents;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::error::{CallError, NotAlive, StartError};
use crate::exit::ExitReason;
use crate::exit_watch::ExitWatch;
use crate::handle::{DEFAULT_CALL_TIMEOUT, wait_reply};
use crate::supervision::events::Announcer;
use crate::supervision::intensity::RestartIntensity;

/// Which children restart when one stops and is to be restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Only that child (the default).
    #[default]
    OneForOne,
    /// That child and every child started after it (which are stopped first, in
    /// reverse order): for pipelines, where later stages depend on earlier ones.
    RestForOne,
    /// Every child.
    OneForAll,
}

/// A supervisor to start; see the [module docs](crate::supervision).
#[must_use = "a supervisor does nothing until started"]
#[derive(Debug)]
pub struct Supervisor {
    children: Vec<ChildSpec>,
    strategy: Strategy,
    intensity: RestartIntensity,
    events: Arc<Announcer<String>>,
}

/// The same as [`Supervisor::new`]: one-for-one, at most 3 restarts in 5 seconds.
impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

/// A child of a running supervisor, as [`SupervisorRef::which_children`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChildInfo {
    /// The child's id from its spec.
    pub id: String,
    /// Whether it is running now.
    pub running: bool,
    /// How many times it was restarted.
    pub restarts: usize,
}

/// Why a supervisor did not start.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SupervisorError {
    /// A child failed to start; the children started before it were stopped.
    ChildStart {
        /// The child's id.
        id: String,
        /// Why it failed.
        error: StartError,
    },
    /// Two children have the same id; nothing was started.
    DuplicateChildId(String),
}

impl fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorError::ChildStart { id, error } => {
                write!(f, "child {id:?} failed to start: {error}")
            }
            SupervisorError::DuplicateChildId(id) => {
                write!(f, "two children have the id {id:?}")
            }
        }
    }
}

/// Its message includes the child's error (see [errors](crate#errors)).
impl std::error::Error for SupervisorError {}

impl Supervisor {
    /// A one-for-one supervisor with no children, allowing 3 restarts in 5 seconds.
    pub fn new() -> Self {
        Supervisor {
            children: Vec::new(),
            strategy: Strategy::OneForOne,
            intensity: RestartIntensity::new(3, Duration::from_secs(5)),
            events: Arc::default(),
        }
    }

    /// The restart strategy.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// At most `max_restarts` restarts within any `period` (default 3 in 5 seconds).
    pub fn intensity(mut self, max_restarts: usize, period: Duration) -> Self {
        self.intensity = RestartIntensity::new(max_restarts, period);
        self
    }

    /// Adds a child, started after those added before it.
    pub fn child(mut self, spec: ChildSpec) -> Self {
        self.children.push(spec);
        self
    }

    /// How many events the supervisor keeps for its watchers that have not read them
    /// yet (default 256, rounded up to a power of two; at least 1, at most 65 536):
    /// a watcher further behind misses the oldest (see [`ChildEvents`]). Set it
    /// before the first [`watch`](Supervisor::watch).
    pub fn watch_capacity(self, capacity: usize) -> Self {
        self.events.set_capacity(capacity);
        self
    }

    /// Watches the children from before the start: the first events are the starts
    /// of the children (see [`ChildEvents`] for an example). Once started, watch with
    /// [`SupervisorRef::watch`]. If the start fails, the stream ends after the exits of
    /// the children stopped for it.
    pub fn watch(&self) -> ChildEvents {
        self.events.watch()
    }

    /// Starts the children in order and the supervisor's task.
    ///
    /// # Errors
    ///
    /// [`SupervisorError::DuplicateChildId`] if two children have the same id (nothing
    /// is started), [`SupervisorError::ChildStart`] if a child fails to start (a child
    /// whose start is ignored is left not running).
    pub async fn start(self) -> Result<SupervisorRef, SupervisorError> {
        runner::start(self).await
    }
}

impl ChildSpec {
    /// A child that is itself a supervisor, built by `make` at every (re)start. It is
    /// stopped with [`Shutdown::Wait`]: a supervisor takes the time its own children
    /// take.
    pub fn supervisor<F>(id: impl Into<String>, make: F) -> Self
    where
        F: Fn() -> Supervisor + Send + Sync + 'static,
    {
        ChildSpec::new(id, move || {
            let supervisor = make();
            async move {
                supervisor
                    .start()
                    .await
                    .map_err(|error| StartError::Init(ExitReason::error(error)))
            }
        })
        .shutdown(Shutdown::Wait)
    }
}

enum Command {
    Stop(ExitReason),
    WhichChildren(oneshot::Sender<Vec<ChildInfo>>),
}

/// A handle to a running supervisor; a [`Supervised`] child itself, so supervisors
/// nest.
///
/// Unlike a stage's handle, it owns what it supervises: once every handle is dropped,
/// the supervisor shuts down (its children first, as [`SupervisorRef::stop`] does),
/// as an OTP supervisor whose parent exits. Keep a handle for as long as the tree
/// should run; a parent supervisor keeps one for a nested supervisor.
#[derive(Clone)]
pub struct SupervisorRef {
    commands: mpsc::UnboundedSender<Command>,
    exit: ExitWatch,
    abort: tokio::task::AbortHandle,
    events: Arc<Announcer<String>>,
}

impl fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorRef")
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl SupervisorRef {
    /// Whether the supervisor is running.
    pub fn is_alive(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Stops every child, in reverse start order (each with [`ExitReason::Shutdown`] and
    /// its shutdown policy), then the supervisor, which stops with `reason`. A
    /// supervisor that is killed instead kills its children.
    ///
    /// # Errors
    ///
    /// [`NotAlive`] if the supervisor had already stopped.
    pub async fn stop(&self, reason: ExitReason) -> Result<(), NotAlive> {
        self.commands
            .send(Command::Stop(reason))
            .map_err(|_| NotAlive)?;
        self.stopped().await;
        Ok(())
    }

    /// Waits until the supervisor has stopped, and returns why. A supervisor that is
    /// killed kills its children, and counts as stopped once they are gone (so that
    /// their names are free again).
    pub async fn stopped(&self) -> ExitReason {
        self.exit.stopped().await
    }

    /// Watches the children from now on: each start, exit and restart, then the
    /// supervisor's own stop, and the end (see [`ChildEvents`]). A watcher made after
    /// the supervisor has stopped ends at once.
    ///
    /// Watching costs the supervisor nothing while nobody watches; a watcher never
    /// holds it back (one that falls behind misses events, and is told).
    ///
    /// ```
    /// use gen_stage::supervision::{ChildEvent, Supervisor};
    /// use gen_stage::ExitReason;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let supervisor = Supervisor::new().start().await?;
    /// let mut events = supervisor.watch();
    /// supervisor.stop(ExitReason::Shutdown).await?;
    /// assert_eq!(
    ///     events.next().await,
    ///     Some(Ok(ChildEvent::SupervisorStopped { reason: ExitReason::Shutdown }))
    /// );
    /// assert_eq!(events.next().await, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch(&self) -> ChildEvents {
        self.events.watch()
    }

    /// The children, in start order.
    ///
    /// # Errors
    ///
    /// [`CallError::NotAlive`] if the supervisor has stopped, [`CallError::Timeout`] if
    /// it did not answer within [`DEFAULT_CALL_TIMEOUT`] (it is busy restarting a child
    /// whose start has not finished).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with its time driver enabled.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, CallError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::WhichChildren(reply))
            .map_err(|_| CallError::NotAlive)?;
        wait_reply(answer, DEFAULT_CALL_TIMEOUT).await
    }
}

impl Supervised for SupervisorRef {
    fn stopped(&self) -> BoxFuture<'static, ExitReason> {
        let supervisor = self.clone();
        Box::pin(async move { supervisor.stopped().await })
    }

    fn request_stop(&self, reason: ExitReason) {
        let _ = self.commands.send(Command::Stop(reason));
    }

    fn kill(&self) {
        self.abort.abort();
    }
}
