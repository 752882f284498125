//! What flows through a pipeline: data with its metadata and its acknowledgement
//! handle.

use std::borrow::Cow;
use std::fmt;

use crate::ack::{AckHandle, Outcome};
use crate::failure::Failure;

/// A source's identity for a message, stable across its deliveries: for
/// de-duplication in an idempotent sink.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageId {
    /// A number: a stream sequence, a row id.
    Number(u64),
    /// Text: an entry id, a `message-id` header.
    Text(String),
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageId::Number(number) => write!(f, "{number}"),
            MessageId::Text(text) => f.write_str(text),
        }
    }
}

/// The key a batcher groups messages by ([`Message::put_batch_key`]): each key has
/// batches of its own, closed by size or by their own timeout.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BatchKey {
    /// A number: a partition, a tenant id.
    Number(u64),
    /// Text: a table, a destination (a `&'static str` is not copied).
    Text(Cow<'static, str>),
}

impl From<u64> for BatchKey {
    fn from(number: u64) -> Self {
        BatchKey::Number(number)
    }
}

impl From<&'static str> for BatchKey {
    fn from(text: &'static str) -> Self {
        BatchKey::Text(Cow::Borrowed(text))
    }
}

impl From<String> for BatchKey {
    fn from(text: String) -> Self {
        BatchKey::Text(Cow::Owned(text))
    }
}

impl fmt::Display for BatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchKey::Number(number) => write!(f, "{number}"),
            BatchKey::Text(text) => f.write_str(text),
        }
    }
}

/// What the source says about a message besides its data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metadata {
    /// Which delivery of the message this is, from 1.
    pub attempt: u32,
    /// The source's identity for the message, if it has one.
    pub id: Option<MessageId>,
}

/// A message: the user's data, what the source says of it, and the obligation to tell
/// the source how it ended (its [`AckHandle`]).
///
/// Sources make messages; the pipeline's callbacks read and change them, mark them
/// failed, route them to a batcher; the pipeline settles each exactly once.
///
/// ```
/// use gen_stage_pipeline::{AckHandle, Message};
///
/// let mut message = Message::new("order 17".to_owned(), AckHandle::none());
/// message.data_mut().push_str(" (checked)");
/// message.put_batcher("database");
/// assert_eq!(message.data(), "order 17 (checked)");
/// assert_eq!(message.batcher(), Some("database"));
/// assert_eq!(message.metadata().attempt, 1);
/// ```
pub struct Message<T> {
    data: T,
    metadata: Metadata,
    pub(crate) ack: AckHandle,
    /// Why it failed and the outcome a callback chose, boxed: most messages have
    /// neither, and every message is moved between stages.
    exceptions: Option<Box<Exceptions>>,
    batcher: Option<Cow<'static, str>>,
    /// The batcher's index, once the processor resolved the name.
    pub(crate) batcher_index: u32,
    pub(crate) batch_key: Option<BatchKey>,
    /// What the message counts for against its batcher's `batch_size` (1 unless set).
    pub(crate) weight: u32,
}

/// What few messages have.
#[derive(Debug, Default)]
struct Exceptions {
    failure: Option<Failure>,
    /// The outcome a callback chose instead of the pipeline's.
    chosen: Option<Outcome>,
}

impl<T: fmt::Debug> fmt::Debug for Message<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("data", &self.data)
            .field("metadata", &self.metadata)
            .field("tag", &self.ack.tag())
            .field("failure", &self.failure())
            .field("batcher", &self.batcher)
            .field("batch_key", &self.batch_key)
            .finish()
    }
}

impl<T> Message<T> {
    /// A message delivered for the first time.
    pub fn new(data: T, ack: AckHandle) -> Self {
        Message {
            data,
            metadata: Metadata {
                attempt: 1,
                id: None,
            },
            ack,
            exceptions: None,
            batcher: None,
            batcher_index: 0,
            batch_key: None,
            weight: 1,
        }
    }

    /// Sets which delivery this is (from 1).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.metadata.attempt = attempt.max(1);
        self
    }

    /// Sets the source's identity for the message.
    pub fn with_id(mut self, id: MessageId) -> Self {
        self.metadata.id = Some(id);
        self
    }

    /// The data.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The data, to change.
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.data
    }

    /// Replaces the data.
    pub fn set_data(&mut self, data: T) {
        self.data = data;
    }

    /// What the source says of the message.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The acknowledgement handle.
    pub fn ack_handle(&self) -> &AckHandle {
        &self.ack
    }

    /// Marks the message failed: it goes to
    /// [`handle_failed`](crate::Handler::handle_failed), never to a batcher, and ends
    /// as the pipeline's [`RetryPolicy`](crate::RetryPolicy) says unless
    /// `handle_failed` chooses.
    pub fn fail(&mut self, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) {
        self.fail_with(Failure::error(error));
    }

    /// Marks the message failed for `failure`.
    pub fn fail_with(&mut self, failure: Failure) {
        self.exceptions.get_or_insert_with(Box::default).failure = Some(failure);
    }

    /// Why the message failed, if it did.
    pub fn failure(&self) -> Option<&Failure> {
        self.exceptions.as_ref()?.failure.as_ref()
    }

    /// Whether it failed.
    pub fn is_failed(&self) -> bool {
        self.failure().is_some()
    }

    /// Chooses how the message ends, instead of the pipeline: in `handle_failed`, for
    /// example, [`Outcome::Terminate`] for a message that can never succeed. A success
    /// cannot be chosen for a failed message ([`Outcome::Ack`] is then ignored).
    pub fn settle_as(&mut self, outcome: Outcome) {
        self.exceptions.get_or_insert_with(Box::default).chosen = Some(outcome);
    }

    /// Acknowledges the message now, before the pipeline is done with it (Broadway's
    /// `ack_immediately`): for work whose loss is acceptable once it has begun (at most
    /// once), or a source that must hear early. The pipeline goes on with the message,
    /// but its outcome is told: a later failure is reported to `handle_failed` and
    /// neither retried nor counted again.
    pub fn ack_immediately(&mut self) {
        self.settle_now(Outcome::Ack);
    }

    /// Tells the source `outcome` now, as [`Message::ack_immediately`] does for an
    /// ack: the message goes on through the pipeline with its outcome told.
    pub fn settle_now(&mut self, outcome: Outcome) {
        self.ack.settle_now(outcome);
    }

    /// Routes the message to the batcher `name` after `handle_message`. A message that
    /// is routed nowhere goes to the batcher named `"default"` if the pipeline has
    /// one, and is acknowledged after `handle_message` otherwise.
    pub fn put_batcher(&mut self, name: impl Into<Cow<'static, str>>) {
        self.batcher = Some(name.into());
    }

    /// The batcher the message is routed to, if one was chosen.
    pub fn batcher(&self) -> Option<&str> {
        self.batcher.as_deref()
    }

    /// Groups the message, in its batcher, with the messages of the same key: each
    /// key's batches are closed by size or by their own timeout. Messages with no key
    /// share one group.
    pub fn put_batch_key(&mut self, key: impl Into<BatchKey>) {
        self.batch_key = Some(key.into());
    }

    /// The batch key, if one was given.
    pub fn batch_key(&self) -> Option<&BatchKey> {
        self.batch_key.as_ref()
    }

    /// What the message counts for against its batcher's `batch_size`: 1 unless set,
    /// so that the size is a count; set each message's size in bytes (in
    /// `handle_message`) and the size is a weight. A batch never exceeds its size,
    /// except a message heavier than the size alone, which forms a batch on its own.
    pub fn set_batch_weight(&mut self, weight: u32) {
        self.weight = weight;
    }

    /// The message's weight in its batch.
    pub fn batch_weight(&self) -> u32 {
        self.weight
    }

    /// Takes the message apart, obligation included: the handle settles when it is
    /// dropped ([`AckHandle`] says how) unless it is given up with
    /// [`AckHandle::into_tag`].
    pub fn into_parts(self) -> (T, Metadata, AckHandle) {
        (self.data, self.metadata, self.ack)
    }

    /// The outcome the message ends in: the one chosen, or `pipeline`'s (which gets
    /// the failure, if any).
    pub(crate) fn outcome(&self, pipeline: impl FnOnce(Option<&Failure>) -> Outcome) -> Outcome {
        let Some(exceptions) = &self.exceptions else {
            return pipeline(None);
        };
        match (exceptions.chosen, &exceptions.failure) {
            (Some(Outcome::Ack), Some(failure)) => pipeline(Some(failure)),
            (Some(chosen), _) => chosen,
            (None, failure) => pipeline(failure.as_ref()),
        }
    }

    /// Takes the failure out, to hand it to the acknowledger.
    pub(crate) fn take_failure(&mut self) -> Option<Failure> {
        self.exceptions.as_mut()?.failure.take()
    }
}
