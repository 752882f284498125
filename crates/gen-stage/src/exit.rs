//! Why stages stop and why subscriptions end.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// The error type that hooks return: any error, boxed.
///
/// A hook that returns `Err(e)` stops its stage with [`ExitReason::Error`].
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// An error shared between the places that report it.
pub(crate) type SharedError = Arc<dyn Error + Send + Sync + 'static>;

/// Why a stage stopped.
///
/// This mirrors the exit reasons of Elixir processes, typed: peers receive it in
/// [`CancelReason`] and decide, according to their [`CancelMode`], whether to stop too.
#[derive(Clone)]
#[non_exhaustive]
pub enum ExitReason {
    /// The stage finished its work (for example a finite producer that ran out of events).
    Normal,
    /// The stage was asked to shut down.
    Shutdown,
    /// The stage was asked to shut down, with a label saying why.
    ///
    /// Like `Shutdown`, a graceful reason: transient subscribers do not stop on it.
    CustomShutdown(Arc<str>),
    /// A hook returned an error, or the stage stopped itself with one.
    Error(Arc<dyn Error + Send + Sync + 'static>),
    /// A hook panicked; the panic message, when it was a string.
    Panic(Arc<str>),
    /// The stage's task was dropped or aborted without stopping (for example when the
    /// runtime shut down).
    Killed,
    /// The stage was not alive when it was reached (GenStage's `:noproc`).
    NotAlive,
    /// A supervisor gave up: its children failed more often than its restart
    /// intensity allows.
    TooManyRestarts,
    /// The stage was asked to stop, and the hook it was running did not return within
    /// the shutdown's time limit: the hook's future was dropped, then `terminate` ran
    /// (see [`StageRef::stop_within`](crate::StageRef::stop_within) and
    /// [`Shutdown::Graceful`](crate::supervision::Shutdown::Graceful)). Not graceful:
    /// work was cut off.
    ShutdownTimedOut,
    /// No user code could reach the stage any more: no handle, registered name,
    /// supervisor or stream reached it or any stage joined to it by subscriptions (see
    /// the crate guide, "Unreachable pipelines stop"). Graceful.
    Unreachable,
}

impl ExitReason {
    /// An [`ExitReason::Error`] from any error value.
    pub fn error<E: Into<BoxError>>(error: E) -> Self {
        ExitReason::Error(Arc::from(error.into()))
    }

    /// An [`ExitReason::CustomShutdown`] with the given label.
    pub fn custom_shutdown(label: impl Into<Arc<str>>) -> Self {
        ExitReason::CustomShutdown(label.into())
    }

    /// Whether the reason is graceful: `Normal`, `Shutdown`, `CustomShutdown` or
    /// `Unreachable`.
    ///
    /// Transient subscriptions only make their consumer stop on reasons that are not
    /// graceful.
    pub fn is_graceful(&self) -> bool {
        matches!(
            self,
            ExitReason::Normal
                | ExitReason::Shutdown
                | ExitReason::CustomShutdown(_)
                | ExitReason::Unreachable
        )
    }

    /// Whether the reason is [`ExitReason::Normal`].
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal)
    }

    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let message: Arc<str> = if let Some(text) = payload.downcast_ref::<&str>() {
            Arc::from(*text)
        } else if let Some(text) = payload.downcast_ref::<String>() {
            Arc::from(text.as_str())
        } else {
            Arc::from("panic with a non-string payload")
        };
        ExitReason::Panic(message)
    }
}

impl fmt::Debug for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("Normal"),
            ExitReason::Shutdown => f.write_str("Shutdown"),
            ExitReason::CustomShutdown(label) => {
                f.debug_tuple("CustomShutdown").field(label).finish()
            }
            ExitReason::Error(error) => f.debug_tuple("Error").field(&error.to_string()).finish(),
            ExitReason::Panic(message) => f.debug_tuple("Panic").field(message).finish(),
            ExitReason::Killed => f.write_str("Killed"),
            ExitReason::NotAlive => f.write_str("NotAlive"),
            ExitReason::TooManyRestarts => f.write_str("TooManyRestarts"),
            ExitReason::ShutdownTimedOut => f.write_str("ShutdownTimedOut"),
            ExitReason::Unreachable => f.write_str("Unreachable"),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::CustomShutdown(label) => write!(f, "shutdown: {label}"),
            ExitReason::Error(error) => write!(f, "error: {error}"),
            ExitReason::Panic(message) => write!(f, "panic: {message}"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::NotAlive => f.write_str("stage not alive"),
            ExitReason::TooManyRestarts => f.write_str("too many restarts"),
            ExitReason::ShutdownTimedOut => {
                f.write_str("shutdown timed out: the hook in hand was dropped")
            }
            ExitReason::Unreachable => {
                f.write_str("unreachable: no handle, name or supervisor reached its pipeline")
            }
        }
    }
}

/// An exit reason is an error, so that `?` turns a stage's reason into a
/// [`BoxError`] (or `anyhow::Error`...) in code that treats any stop as a failure. Its
/// message includes what it wraps; [`source`](Error::source) is empty.
impl Error for ExitReason {}

impl PartialEq for ExitReason {
    /// Reasons compare by variant and content; two `Error`s are equal when they are the
    /// same error value or display the same text.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ExitReason::Normal, ExitReason::Normal)
            | (ExitReason::Shutdown, ExitReason::Shutdown)
            | (ExitReason::Killed, ExitReason::Killed)
            | (ExitReason::NotAlive, ExitReason::NotAlive)
            | (ExitReason::TooManyRestarts, ExitReason::TooManyRestarts)
            | (ExitReason::ShutdownTimedOut, ExitReason::ShutdownTimedOut)
            | (ExitReason::Unreachable, ExitReason::Unreachable) => true,
            (ExitReason::CustomShutdown(a), ExitReason::CustomShutdown(b)) => a == b,
            (ExitReason::Panic(a), ExitReason::Panic(b)) => a == b,
            (ExitReason::Error(a), ExitReason::Error(b)) => {
                Arc::ptr_eq(a, b) || a.to_string() == b.to_string()
            }
            _ => false,
        }
    }
}

/// Equality by variant and content is an equivalence: an error equals itself, by
/// its text.
impl Eq for ExitReason {}

/// Why a subscription ended, as seen by the `handle_cancel` hooks.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CancelReason {
    /// The other side cancelled the subscription with this reason.
    Cancelled(ExitReason),
    /// The other side stopped (or was never alive) with this reason.
    Down(ExitReason),
    /// The producer refused the subscription (its `handle_consumer_subscribed` hook or its
    /// dispatcher rejected it). A rejected subscription never stops the consumer.
    Rejected(Arc<dyn Error + Send + Sync + 'static>),
}

impl PartialEq for CancelReason {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (CancelReason::Cancelled(a), CancelReason::Cancelled(b))
            | (CancelReason::Down(a), CancelReason::Down(b)) => a == b,
            (CancelReason::Rejected(a), CancelReason::Rejected(b)) => {
                Arc::ptr_eq(a, b) || a.to_string() == b.to_string()
            }
            _ => false,
        }
    }
}

impl CancelReason {
    /// The exit reason carried by the cancellation; a rejection reads as an error.
    pub fn exit_reason(&self) -> ExitReason {
        match self {
            CancelReason::Cancelled(reason) | CancelReason::Down(reason) => reason.clone(),
            CancelReason::Rejected(error) => ExitReason::Error(error.clone()),
        }
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelReason::Cancelled(reason) => write!(f, "cancelled ({reason})"),
            CancelReason::Down(reason) => write!(f, "peer down ({reason})"),
            CancelReason::Rejected(error) => write!(f, "subscription rejected: {error}"),
        }
    }
}

/// What a consumer does when the producer ends a subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CancelMode {
    /// The consumer stops, with the producer's reason, whatever the reason (the default).
    #[default]
    Permanent,
    /// The consumer stops unless the reason is graceful (see [`ExitReason::is_graceful`]).
    Transient,
    /// The consumer keeps running.
    Temporary,
}

impl CancelMode {
    /// Whether a consumer with this mode stops when its producer ends the subscription
    /// for `reason`.
    pub fn stops_consumer(self, reason: &CancelReason) -> bool {
        let exit = match reason {
            CancelReason::Rejected(_) => return false,
            CancelReason::Cancelled(exit) | CancelReason::Down(exit) => exit,
        };
        match self {
            CancelMode::Permanent => true,
            CancelMode::Transient => !exit.is_graceful(),
            CancelMode::Temporary => false,
        }
    }
}
