//! The stages a pipeline is made of, and what they share: running a callback so that
//! its error, panic or timeout fails only what it held, and settling messages.

mod batch_processor;
mod batcher;
mod entry;
mod processor;

pub(crate) use batch_processor::BatchProcessor;
pub(crate) use batcher::Batcher;
pub(crate) use entry::{AsTheyAre, Entry, EntryMessage, MapWith, Transform};
pub(crate) use processor::{LastProcessor, Processor, Route};

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gen_stage::BoxError;

use crate::ack::Outcome;
use crate::failure::{Callback, Failure, RetryPolicy};
use crate::handler::Handler;
use crate::message::Message;
use crate::settle::Settler;

/// What every processor and batch processor of a pipeline holds.
pub(crate) struct Shared<H> {
    pub(crate) handler: Arc<H>,
    pub(crate) settler: Arc<Settler>,
    pub(crate) policy: RetryPolicy,
    pub(crate) pipeline: Arc<str>,
}

impl<H> Clone for Shared<H> {
    fn clone(&self) -> Self {
        Shared {
            handler: self.handler.clone(),
            settler: self.settler.clone(),
            policy: self.policy,
            pipeline: self.pipeline.clone(),
        }
    }
}

/// Runs a callback: its error, panic or timeout becomes the failure of what it held.
pub(crate) async fn call<R>(
    callback: Callback,
    timeout: Option<Duration>,
    hook: impl Future<Output = R>,
) -> Result<R, Failure> {
    let guarded = AssertUnwindSafe(hook).catch_unwind();
    let result = match timeout {
        Some(limit) => match tokio::time::timeout(limit, guarded).await {
            Ok(result) => result,
            Err(_) => {
                return Err(Failure::Timeout {
                    callback,
                    after: limit,
                });
            }
        },
        None => guarded.await,
    };
    result.map_err(|payload| Failure::panic(callback, &*payload))
}

/// Runs a callback that returns a `Result`: its error fails what it held too.
pub(crate) async fn call_fallible(
    callback: Callback,
    timeout: Option<Duration>,
    hook: impl Future<Output = Result<(), BoxError>>,
) -> Result<(), Failure> {
    call(callback, timeout, hook)
        .await?
        .map_err(|error| Failure::Error(Arc::from(error)))
}

/// Settles messages whose callbacks are done: the failed ones go through
/// `handle_failed`, then each ends in its chosen outcome, or the policy's. The usual
/// delivery, with no failure, is settled in place (messages are large to move).
pub(crate) async fn finish<H: Handler>(shared: &Shared<H>, mut messages: Vec<Message<H::Data>>) {
    if messages.is_empty() {
        return;
    }
    if !messages.iter().any(Message::is_failed) {
        settle(shared, &mut messages);
        return;
    }
    let (mut failed, mut succeeded): (Vec<_>, Vec<_>) =
        messages.into_iter().partition(Message::is_failed);
    let hook = shared.handler.handle_failed(&mut failed);
    if let Err(failure) = call(Callback::HandleFailed, None, hook).await {
        tracing::error!(pipeline = %shared.pipeline, %failure, "handle_failed panicked: the retry policy decides");
    }
    succeeded.append(&mut failed);
    settle(shared, &mut succeeded);
}

/// Settles each message: its chosen outcome, else an ack, or for a failed one the
/// retry policy's outcome for its attempt.
fn settle<H: Handler>(shared: &Shared<H>, messages: &mut [Message<H::Data>]) {
    let mut run = shared.settler.run();
    for message in messages {
        let attempt = message.metadata().attempt;
        let outcome = message.outcome(|failure| match failure {
            None => Outcome::Ack,
            Some(_) => shared.policy.outcome(attempt),
        });
        let failure = message.take_failure();
        run.add(&mut message.ack, outcome, failure);
    }
}
