//! The errors of the core: one type per operation, an enum to match on.
//!
//! | operation | error |
//! | --- | --- |
//! | a builder's `start` | [`StartError`], which wraps [`OptionsError`], [`SubscribeError`] or [`NameTaken`] (the name given to `name` is held) |
//! | [`StageRef::subscribe_to`], [`stream::subscribe`] | [`SubscribeError`] |
//! | [`SubscribeOptions::validate`] | [`OptionsError`] |
//! | [`StageRef::call`], queries ([`StageRef::barrier`], ...), the supervisors' calls | [`CallError`] |
//! | [`StageRef::cast`], [`StageRef::cast_when_room`], [`StageRef::async_info`] | [`SendError`], with the message |
//! | [`StageRef::try_cast`] | [`TryCastError`], with the message |
//! | [`StageRef::sync_info`] | [`SyncInfoError`], with the message |
//! | [`StageRef::stop`] and the other stops | [`NotAlive`] |
//! | [`Context::ask`], [`Context::cancel`] (a tag that is not the stage's) | [`UnknownSubscription`] |
//! | starting a task of a [`ConsumerSupervisor`] | [`StartChildError`], with the event |
//!
//! An error's message includes the message of any error it wraps, so that printing it
//! alone says what went wrong; its `source()` is empty, so that a report printing the
//! whole chain (anyhow's `{:#}`) shows each message once. Errors that give a value back
//! (the message not sent, the event not started) have `into_inner` (or `into_event`).
//!
//! The errors of the other namespaces live there:
//! [`SupervisorError`](crate::supervision::SupervisorError) in `supervision`,
//! [`BroadcastError`](crate::dispatcher::BroadcastError) and
//! [`PartitionError`](crate::dispatcher::PartitionError) in `dispatcher`.
//!
//! [`StageRef::subscribe_to`]: crate::StageRef::subscribe_to
//! [`stream::subscribe`]: crate::stream::subscribe
//! [`SubscribeOptions::validate`]: crate::SubscribeOptions::validate
//! [`StageRef::call`]: crate::StageRef::call
//! [`StageRef::barrier`]: crate::StageRef::barrier
//! [`StageRef::cast`]: crate::StageRef::cast
//! [`StageRef::cast_when_room`]: crate::StageRef::cast_when_room
//! [`StageRef::async_info`]: crate::StageRef::async_info
//! [`StageRef::try_cast`]: crate::StageRef::try_cast
//! [`StageRef::sync_info`]: crate::StageRef::sync_info
//! [`StageRef::stop`]: crate::StageRef::stop
//! [`Context::ask`]: crate::Context::ask
//! [`Context::cancel`]: crate::Context::cancel
//! [`ConsumerSupervisor`]: crate::supervision::ConsumerSupervisor

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use crate::exit::ExitReason;

/// Invalid subscription or stage options.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionsError {
    /// `max_demand` was 0; a consumer must be able to ask for at least one event.
    MaxDemandZero,
    /// `min_demand` was not below `max_demand`.
    MinDemandNotBelowMax {
        /// The `min_demand` given (or its default).
        min_demand: usize,
        /// The `max_demand` given.
        max_demand: usize,
    },
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::MaxDemandZero => {
                f.write_str("expected max_demand to be equal to or greater than 1, got: 0")
            }
            OptionsError::MinDemandNotBelowMax {
                min_demand,
                max_demand,
            } => write!(
                f,
                "expected min_demand to be below max_demand ({max_demand}), got: {min_demand}"
            ),
        }
    }
}

impl Error for OptionsError {}

/// Why a stage could not be started.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The `init` hook asked for the stage not to start ([`crate::Init::Ignore`]).
    /// Not a failure: supervisors treat it as "nothing to run".
    Ignored,
    /// The `init` hook failed or stopped the stage.
    Init(ExitReason),
    /// The options were invalid.
    InvalidOptions(OptionsError),
    /// A subscription given to the builder could not be made.
    Subscribe(SubscribeError),
    /// The name given to the builder is held by another running stage.
    NameTaken(NameTaken),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Ignored => f.write_str("stage start ignored by its init hook"),
            StartError::Init(reason) => write!(f, "stage init failed: {reason}"),
            StartError::InvalidOptions(error) => write!(f, "invalid stage options: {error}"),
            StartError::Subscribe(error) => write!(f, "initial subscription failed: {error}"),
            StartError::NameTaken(error) => write!(f, "cannot register the stage: {error}"),
        }
    }
}

impl Error for StartError {}

impl From<OptionsError> for StartError {
    fn from(error: OptionsError) -> Self {
        StartError::InvalidOptions(error)
    }
}

impl From<SubscribeError> for StartError {
    fn from(error: SubscribeError) -> Self {
        StartError::Subscribe(error)
    }
}

/// Why a subscription could not be made.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The options were invalid.
    InvalidOptions(OptionsError),
    /// The producer was not alive.
    ProducerNotAlive,
    /// The consumer was not alive.
    ConsumerNotAlive,
    /// The producer refused the subscription: its `handle_consumer_subscribed` hook or its
    /// dispatcher returned this error.
    Rejected(Arc<dyn Error + Send + Sync + 'static>),
    /// The consumer's own `handle_producer_subscribed` hook failed, which stopped it.
    ConsumerStopped(ExitReason),
    /// No answer came in time (the consumer or the producer is busy in a hook). The
    /// subscription is cancelled: it never goes live, even once they catch up.
    Timeout,
    /// No running stage is registered under this name (in the registry given).
    NotRegistered(String),
    /// The producer runs inside a [`Delegate`](crate::Delegate): its handle is a view of
    /// the wrapper, which alone takes subscriptions. Subscribe to the wrapper.
    DelegatedProducer,
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::InvalidOptions(error) => {
                write!(f, "invalid subscription options: {error}")
            }
            SubscribeError::ProducerNotAlive => f.write_str("the producer is not alive"),
            SubscribeError::ConsumerNotAlive => f.write_str("the consumer is not alive"),
            SubscribeError::Rejected(error) => {
                write!(f, "subscription rejected by the producer: {error}")
            }
            SubscribeError::ConsumerStopped(reason) => {
                write!(f, "the consumer stopped while subscribing: {reason}")
            }
            SubscribeError::Timeout => f.write_str("timed out waiting for the subscription"),
            SubscribeError::NotRegistered(name) => {
                write!(
                    f,
                    "no running stage that emits these events is registered as {name:?}"
                )
            }
            SubscribeError::DelegatedProducer => {
                f.write_str("the producer runs inside a delegate: subscribe to its wrapper instead")
            }
        }
    }
}

impl Error for SubscribeError {}

impl From<OptionsError> for SubscribeError {
    fn from(error: OptionsError) -> Self {
        SubscribeError::InvalidOptions(error)
    }
}

/// Why a call got no reply.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// No reply came within the timeout. The stage may still handle the request.
    Timeout,
    /// The stage was not alive when called, or dropped the reply handle without
    /// replying and went on running.
    NotAlive,
    /// The stage stopped before replying (its handler panicked or failed, or it was
    /// stopped with the call still queued): why it stopped.
    Stopped(ExitReason),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout => f.write_str("call timed out"),
            CallError::NotAlive => f.write_str("the stage is not alive or did not reply"),
            CallError::Stopped(reason) => {
                write!(f, "the stage stopped before replying ({reason})")
            }
        }
    }
}

/// Why [`StageRef::try_cast`](crate::StageRef::try_cast) gave a message back.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TryCastError<T> {
    /// The stage's mailbox holds as many user messages as its capacity allows.
    Full(T),
    /// The stage is not alive.
    NotAlive(T),
}

impl<T> TryCastError<T> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> T {
        match self {
            TryCastError::Full(message) | TryCastError::NotAlive(message) => message,
        }
    }
}

impl<T> fmt::Debug for TryCastError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryCastError::Full(_) => f.debug_tuple("Full").finish_non_exhaustive(),
            TryCastError::NotAlive(_) => f.debug_tuple("NotAlive").finish_non_exhaustive(),
        }
    }
}

impl<T> fmt::Display for TryCastError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryCastError::Full(_) => f.write_str("the stage's mailbox is full"),
            TryCastError::NotAlive(_) => f.write_str("the stage is not alive"),
        }
    }
}

impl<T> Error for TryCastError<T> {}

impl Error for CallError {}

/// A message could not be delivered because the stage is not alive; the message is
/// given back.
#[derive(Clone, PartialEq, Eq)]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError").finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stage is not alive")
    }
}

impl<T> Error for SendError<T> {}

/// Why [`StageRef::sync_info`](crate::StageRef::sync_info) failed.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncInfoError<T> {
    /// The stage is not alive: the message is given back.
    NotAlive(T),
    /// The stage did not take the message in within the timeout (it is busy in a
    /// hook). It has the message, and will handle it in its turn.
    Timeout,
}

impl<T> SyncInfoError<T> {
    /// The message, if it was not delivered.
    pub fn into_inner(self) -> Option<T> {
        match self {
            SyncInfoError::NotAlive(message) => Some(message),
            SyncInfoError::Timeout => None,
        }
    }
}

impl<T> fmt::Debug for SyncInfoError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncInfoError::NotAlive(_) => f.debug_tuple("NotAlive").finish_non_exhaustive(),
            SyncInfoError::Timeout => f.write_str("Timeout"),
        }
    }
}

impl<T> fmt::Display for SyncInfoError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncInfoError::NotAlive(_) => f.write_str("the stage is not alive"),
            SyncInfoError::Timeout => f.write_str("the stage did not take the message in time"),
        }
    }
}

impl<T> Error for SyncInfoError<T> {}

/// Why [`ConsumerRef::start_child`](crate::ConsumerRef::start_child) failed.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartChildError<E> {
    /// The supervisor is not alive: the event is given back.
    NotAlive(E),
    /// The supervisor took the request in and stopped before answering; the event
    /// went with it (its task, if it started, was stopped with the supervisor).
    Stopped,
    /// No answer within the timeout. The supervisor still has the request and may
    /// start the task.
    Timeout,
}

impl<E> StartChildError<E> {
    /// The event, if it never reached the supervisor.
    pub fn into_event(self) -> Option<E> {
        match self {
            StartChildError::NotAlive(event) => Some(event),
            StartChildError::Stopped | StartChildError::Timeout => None,
        }
    }
}

impl<E> fmt::Debug for StartChildError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartChildError::NotAlive(_) => f.debug_tuple("NotAlive").finish_non_exhaustive(),
            StartChildError::Stopped => f.write_str("Stopped"),
            StartChildError::Timeout => f.write_str("Timeout"),
        }
    }
}

impl<E> fmt::Display for StartChildError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartChildError::NotAlive(_) => "the supervisor is not alive",
            StartChildError::Stopped => "the supervisor stopped before starting the task",
            StartChildError::Timeout => "the supervisor did not answer in time",
        })
    }
}

impl<E> Error for StartChildError<E> {}

/// The stage was not alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotAlive;

impl fmt::Display for NotAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stage is not alive")
    }
}

impl Error for NotAlive {}

/// The subscription is not (or no longer) one of this stage's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownSubscription(pub crate::SubscriptionTag);

impl fmt::Display for UnknownSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown subscription {}", self.0)
    }
}

impl Error for UnknownSubscription {}

/// The name is held by another running stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTaken(pub String);

impl fmt::Display for NameTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the name {:?} is already registered to a running stage",
            self.0
        )
    }
}

impl Error for NameTaken {}
