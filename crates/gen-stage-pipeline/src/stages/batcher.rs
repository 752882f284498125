//! A batcher: groups the messages routed to it into batches closed by size, by
//! timeout from their first message, or by the pipeline's drain.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::{
    AskMode, BoxError, CancelReason, ProducerConsumer, ProducerConsumerContext, SubscribeOptions,
    SubscriptionTag, TimerRef,
};

use crate::batch::{Batch, BatchTrigger};
use crate::message::Message;

/// A batcher's timer: the batch of this generation has waited its timeout.
#[derive(Debug)]
pub(crate) struct BatcherTick(u64);

pub(crate) struct Batcher<T> {
    name: Arc<str>,
    size: usize,
    timeout: Duration,
    open: Vec<Message<T>>,
    /// Counts the batches closed: a timer names the batch it was set for.
    generation: u64,
    timer: Option<TimerRef>,
    /// The processors it receives from.
    upstream: HashSet<SubscriptionTag>,
}

impl<T> Batcher<T> {
    pub(crate) fn new(name: Arc<str>, size: usize, timeout: Duration) -> Self {
        Batcher {
            name,
            size,
            timeout,
            open: Vec::new(),
            generation: 0,
            timer: None,
            upstream: HashSet::new(),
        }
    }

    /// Closes the open batch.
    fn close(
        &mut self,
        trigger: BatchTrigger,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Batch<T>
    where
        T: Send + 'static,
    {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_timer(timer);
        }
        self.generation += 1;
        let messages = std::mem::take(&mut self.open);
        tracing::trace!(batcher = %self.name, size = messages.len(), ?trigger, "batch closed");
        Batch::new(messages, self.name.clone(), trigger)
    }
}

impl<T: Send + 'static> ProducerConsumer for Batcher<T> {
    type Input = Message<T>;
    type Output = Batch<T>;
    type Message = BatcherTick;

    async fn handle_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        _options: &SubscribeOptions,
        _ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<AskMode, BoxError> {
        self.upstream.insert(tag);
        Ok(AskMode::Automatic)
    }

    async fn handle_events(
        &mut self,
        messages: Vec<Message<T>>,
        _from: SubscriptionTag,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<Batch<T>>, BoxError> {
        let mut closed = Vec::new();
        for message in messages {
            if self.open.is_empty() {
                self.open.reserve(self.size);
                self.timer = Some(ctx.send_after(self.timeout, BatcherTick(self.generation)));
            }
            self.open.push(message);
            if self.open.len() >= self.size {
                closed.push(self.close(BatchTrigger::Size, ctx));
            }
        }
        Ok(closed)
    }

    async fn handle_message(
        &mut self,
        BatcherTick(generation): BatcherTick,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        if generation == self.generation && !self.open.is_empty() {
            self.timer = None;
            let batch = self.close(BatchTrigger::Timeout, ctx);
            ctx.emit(vec![batch]);
        }
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        _reason: &CancelReason,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        // Once every processor is gone (the pipeline drains), the open batch goes.
        if self.upstream.remove(&tag) && self.upstream.is_empty() && !self.open.is_empty() {
            let batch = self.close(BatchTrigger::Flush, ctx);
            ctx.emit(vec![batch]);
        }
        Ok(())
    }
}
