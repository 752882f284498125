//! Batches of messages for `handle_batch`, and the outcome it returns.

use std::sync::{Arc, Mutex};

use crate::failure::Failure;
use crate::message::{BatchKey, Message};
use crate::sync::lock;

/// What closed a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BatchTrigger {
    /// It reached the batcher's `batch_size`.
    Size,
    /// Its `batch_timeout` passed since its first message.
    Timeout,
    /// The pipeline drained: partial batches are flushed.
    Flush,
    /// The batcher had as many keys open as it may
    /// ([`BatcherOptions::max_open_keys`](crate::BatcherOptions::max_open_keys)), and
    /// this was the key open the longest.
    KeyLimit,
}

/// Where a batch comes from and why it was closed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchInfo {
    /// The batcher's name.
    pub batcher: Arc<str>,
    /// The key its messages share, if they have one.
    pub batch_key: Option<BatchKey>,
    /// How many messages it holds.
    pub size: usize,
    /// What closed it.
    pub trigger: BatchTrigger,
}

/// Messages a batcher grouped, for [`Handler::handle_batch`](crate::Handler::handle_batch).
///
/// `handle_batch` must return a [`BatchOutcome`], and the only way to make one is to
/// consume the batch ([`Batch::done`], [`Batch::fail_all`]): a batch cannot be
/// forgotten. This does not compile, since there is no outcome without the batch:
///
/// ```compile_fail
/// use gen_stage_pipeline::{Batch, BatchOutcome};
///
/// fn handle_batch(batch: Batch<u64>) -> BatchOutcome<u64> {
///     drop(batch);
///     BatchOutcome::default()
/// }
/// ```
///
/// A batch dropped unfinished (its callback panicked, or ran past the batch
/// processor's timeout) is not lost: its messages fail with
/// [`Failure::Panic`](crate::Failure::Panic) or
/// [`Failure::Timeout`](crate::Failure::Timeout), and go through `handle_failed` and
/// the retry policy like any failure.
#[derive(Debug)]
pub struct Batch<T> {
    messages: Vec<Message<T>>,
    info: BatchInfo,
    /// Its batch processor, with `partition_by` (0 otherwise).
    pub(crate) partition: u32,
    /// Where its messages go if it is dropped before it was done with (its callback
    /// panicked or ran out of time): back to the batch processor, to fail them.
    pub(crate) salvage: Option<Arc<Mutex<Vec<Message<T>>>>>,
}

impl<T> Drop for Batch<T> {
    fn drop(&mut self) {
        if self.messages.is_empty() {
            return;
        }
        if let Some(salvage) = &self.salvage {
            lock(salvage).append(&mut self.messages);
        }
    }
}

impl<T> Batch<T> {
    pub(crate) fn new(
        messages: Vec<Message<T>>,
        batcher: Arc<str>,
        batch_key: Option<BatchKey>,
        trigger: BatchTrigger,
        partition: u32,
    ) -> Self {
        let size = messages.len();
        Batch {
            partition,
            salvage: None,
            messages,
            info: BatchInfo {
                batcher,
                batch_key,
                size,
                trigger,
            },
        }
    }

    /// Where it comes from and why it was closed.
    pub fn info(&self) -> &BatchInfo {
        &self.info
    }

    /// How many messages it holds.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether it holds none (never, for a batch a batcher made).
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The messages.
    pub fn messages(&self) -> &[Message<T>] {
        &self.messages
    }

    /// The messages, to change or to mark failed one by one
    /// ([`Message::fail`]).
    pub fn messages_mut(&mut self) -> &mut [Message<T>] {
        &mut self.messages
    }

    /// The messages' data, in order.
    pub fn data(&self) -> impl Iterator<Item = &T> {
        self.messages.iter().map(Message::data)
    }

    /// Done: the messages marked failed have failed, the others are acknowledged.
    pub fn done(mut self) -> BatchOutcome<T> {
        BatchOutcome {
            messages: std::mem::take(&mut self.messages),
        }
    }

    /// The whole batch failed (a sink refused it): every message fails with `error`.
    pub fn fail_all(
        mut self,
        error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> BatchOutcome<T> {
        self.fail_each(Failure::error(error));
        self.done()
    }

    fn fail_each(&mut self, failure: Failure) {
        for message in &mut self.messages {
            message.fail_with(failure.clone());
        }
    }
}

/// What [`Handler::handle_batch`](crate::Handler::handle_batch) returns: the batch,
/// consumed, with each message's success or failure.
#[derive(Debug)]
#[must_use = "a batch outcome settles its messages only when returned from handle_batch"]
pub struct BatchOutcome<T> {
    messages: Vec<Message<T>>,
}

impl<T> BatchOutcome<T> {
    /// The messages, to settle.
    pub(crate) fn into_messages(self) -> Vec<Message<T>> {
        self.messages
    }
}
