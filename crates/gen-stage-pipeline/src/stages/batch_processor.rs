//! A batch processor: runs `handle_batch` on the batches of one batcher, and settles
//! their messages.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gen_stage::{BoxError, Consumer, ConsumerContext, SubscriptionTag};

use super::{Shared, call, finish};
use crate::activity::Activity;
use crate::batch::Batch;
use crate::failure::Callback;
use crate::handler::Handler;
use crate::sync::lock;

pub(crate) struct BatchProcessor<H: Handler> {
    shared: Shared<H>,
    timeout: Option<Duration>,
    activity: Arc<Activity>,
}

impl<H: Handler> BatchProcessor<H> {
    pub(crate) fn new(
        shared: Shared<H>,
        timeout: Option<Duration>,
        activity: Arc<Activity>,
    ) -> Self {
        BatchProcessor {
            shared,
            timeout,
            activity,
        }
    }
}

impl<H: Handler> Consumer for BatchProcessor<H> {
    type Event = Batch<H::Data>;
    type Message = ();

    async fn handle_events(
        &mut self,
        batches: Vec<Batch<H::Data>>,
        _from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        for mut batch in batches {
            let info = batch.info().clone();
            // The messages come back here if the callback drops the batch unfinished.
            let salvage = Arc::new(Mutex::new(Vec::new()));
            batch.salvage = Some(salvage.clone());
            let span = tracing::debug_span!(
                "handle_batch",
                pipeline = %self.shared.pipeline,
                batcher = %info.batcher,
                size = info.size,
                trigger = ?info.trigger,
                failed = tracing::field::Empty,
            );
            let started = self.activity.begin(info.size);
            let handled = call(
                Callback::HandleBatch,
                self.timeout,
                tracing::Instrument::instrument(
                    self.shared.handler.handle_batch(batch),
                    span.clone(),
                ),
            )
            .await;
            match handled {
                Ok(outcome) => {
                    let messages = outcome.into_messages();
                    span.record("failed", messages.iter().filter(|m| m.is_failed()).count());
                    finish(&self.shared, messages).await;
                }
                // The callback dropped the batch unfinished: its messages fail.
                Err(failure) => {
                    let mut messages = std::mem::take(&mut *lock(&salvage));
                    tracing::warn!(
                        pipeline = %self.shared.pipeline,
                        batcher = %info.batcher,
                        size = info.size,
                        %failure,
                        "batch failed in its callback"
                    );
                    for message in &mut messages {
                        message.fail_with(failure.clone());
                    }
                    finish(&self.shared, messages).await;
                }
            }
            self.activity.end(started, info.size);
        }
        Ok(())
    }
}
