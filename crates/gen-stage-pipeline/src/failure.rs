//! Why a message failed, and what the pipeline does about it by default: retry with
//! backoff, then reject.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::ack::Outcome;

/// An error shared by the outcomes and reports that name it.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync>;

/// The callbacks a failure can come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Callback {
    /// [`Handler::prepare_messages`](crate::Handler::prepare_messages).
    PrepareMessages,
    /// [`Handler::handle_message`](crate::Handler::handle_message).
    HandleMessage,
    /// [`Handler::handle_batch`](crate::Handler::handle_batch).
    HandleBatch,
    /// [`Handler::handle_failed`](crate::Handler::handle_failed).
    HandleFailed,
}

impl fmt::Display for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Callback::PrepareMessages => "prepare_messages",
            Callback::HandleMessage => "handle_message",
            Callback::HandleBatch => "handle_batch",
            Callback::HandleFailed => "handle_failed",
        })
    }
}

/// Why a message failed.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Failure {
    /// A callback returned an error, or marked the message failed.
    Error(SharedError),
    /// A callback panicked while it held the message.
    Panic {
        /// The callback.
        callback: Callback,
        /// The panic's message.
        message: Arc<str>,
    },
    /// A callback ran past the pipeline's timeout for it.
    Timeout {
        /// The callback.
        callback: Callback,
        /// The timeout.
        after: Duration,
    },
    /// The message was routed to a batcher the pipeline does not have.
    UnknownBatcher(Arc<str>),
}

impl Failure {
    /// A failure carrying `error`.
    pub fn error(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Failure::Error(Arc::from(error.into()))
    }

    /// A failure for a panic's payload.
    pub(crate) fn panic(callback: Callback, payload: &(dyn std::any::Any + Send)) -> Self {
        let message = if let Some(text) = payload.downcast_ref::<&str>() {
            Arc::from(*text)
        } else if let Some(text) = payload.downcast_ref::<String>() {
            Arc::from(text.as_str())
        } else {
            Arc::from("a panic with a payload that is not text")
        };
        Failure::Panic { callback, message }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(error) => write!(f, "{error}"),
            Failure::Panic { callback, message } => write!(f, "{callback} panicked: {message}"),
            Failure::Timeout { callback, after } => {
                write!(f, "{callback} did not finish within {after:?}")
            }
            Failure::UnknownBatcher(name) => write!(f, "no batcher is named {name:?}"),
        }
    }
}

/// What becomes of a failed message that [`handle_failed`](crate::Handler::handle_failed)
/// did not settle otherwise: retried with an exponential, jittered, capped backoff by
/// attempt, then rejected (to the source's dead-letter route) after `max_attempts`.
///
/// The defaults: 5 attempts, the first retry after 1 s, doubling, at most 5 min, each
/// delay drawn between half and all of its value (so retries of many messages that
/// failed together spread out).
///
/// ```
/// use std::time::Duration;
/// use gen_stage_pipeline::{Outcome, RetryPolicy};
///
/// let policy = RetryPolicy::new().max_attempts(3).first_delay(Duration::from_secs(2)).no_jitter();
/// assert_eq!(policy.outcome(1), Outcome::Retry { after: Duration::from_secs(2) });
/// assert_eq!(policy.outcome(2), Outcome::Retry { after: Duration::from_secs(4) });
/// assert_eq!(policy.outcome(3), Outcome::Reject);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: Option<u32>,
    first_delay: Duration,
    max_delay: Duration,
    jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: Some(5),
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rejects a message that failed on its `attempts`-th delivery (at least 1: a
    /// message that fails once is rejected).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts.max(1));
        self
    }

    /// Retries failed messages however often they fail. With a zero delay this
    /// redelivers a message that always fails at once, for ever: `start` warns.
    pub fn unlimited_attempts(mut self) -> Self {
        self.max_attempts = None;
        self
    }

    /// The delay before the first retry; each further one doubles it.
    pub fn first_delay(mut self, delay: Duration) -> Self {
        self.first_delay = delay;
        self
    }

    /// The longest delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Uses the delays as computed, without drawing each between half and all of it.
    pub fn no_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The outcome of a message that failed on its `attempt`-th delivery (from 1).
    pub fn outcome(&self, attempt: u32) -> Outcome {
        if self.max_attempts.is_some_and(|max| attempt >= max) {
            return Outcome::Reject;
        }
        let doublings = attempt.saturating_sub(1).min(31);
        let delay = self
            .first_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay);
        let after = if self.jitter { jittered(delay) } else { delay };
        Outcome::Retry { after }
    }

    /// Whether a message that always fails would be delivered again at once, for ever.
    pub(crate) fn loops(&self) -> bool {
        self.max_attempts.is_none() && (self.first_delay.is_zero() || self.max_delay.is_zero())
    }
}

/// `delay` scaled by a random factor in [1/2, 1].
fn jittered(delay: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // Randomness without a dependency: the standard library seeds each `RandomState`
    // afresh.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(delay.subsec_nanos());
    let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    delay.mul_f64(0.5 + fraction / 2.0)
}
