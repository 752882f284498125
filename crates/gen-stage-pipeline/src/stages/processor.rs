//! A processor: runs `prepare_messages` and `handle_message`, passes messages routed to
//! a batcher on, and settles the rest.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use gen_stage::{
    BoxError, Consumer, ConsumerContext, ProducerConsumer, ProducerConsumerContext, SubscriptionTag,
};

use super::{Shared, call_fallible, finish};
use crate::activity::Activity;
use crate::failure::{Callback, Failure};
use crate::handler::{Handler, ProcessorContext};
use crate::message::Message;

/// Where a processor passes the messages it handled.
pub(crate) enum Route {
    /// The last layer: to the pipeline's batchers (by index), or settled here.
    Batchers(Arc<[Arc<str>]>),
    /// A layer before the last: every message that did not fail, to the next layer.
    NextLayer,
}

pub(crate) struct Processor<H: Handler> {
    shared: Shared<H>,
    context: ProcessorContext,
    route: Route,
    /// The batcher of messages routed nowhere: the one named "default", if any.
    default_batcher: Option<u32>,
    timeout: Option<Duration>,
    activity: Arc<Activity>,
}

impl<H: Handler> Processor<H> {
    pub(crate) fn new(
        shared: Shared<H>,
        (layer, index): (usize, usize),
        route: Route,
        timeout: Option<Duration>,
        activity: Arc<Activity>,
    ) -> Self {
        let default_batcher = match &route {
            Route::Batchers(batchers) => batchers
                .iter()
                .position(|name| &**name == "default")
                .map(|index| index as u32),
            Route::NextLayer => None,
        };
        Processor {
            context: ProcessorContext {
                pipeline: shared.pipeline.clone(),
                layer,
                index,
            },
            shared,
            route,
            default_batcher,
            timeout,
            activity,
        }
    }

    /// Where a handled message goes on to: the next layer, or the index of its
    /// batcher; `None` to settle it here. A batcher the pipeline does not have fails
    /// the message.
    fn route(&self, message: &mut Message<H::Data>) -> Option<u32> {
        let batchers = match &self.route {
            Route::NextLayer => return Some(0),
            Route::Batchers(batchers) => batchers,
        };
        let Some(name) = message.batcher() else {
            return self.default_batcher;
        };
        match batchers.iter().position(|batcher| &**batcher == name) {
            Some(index) => Some(index as u32),
            None => {
                let failure = Failure::UnknownBatcher(Arc::from(name));
                message.fail_with(failure);
                None
            }
        }
    }

    /// Handles a delivery, counting its time in callbacks for the snapshots.
    async fn handle(&self, messages: Vec<Message<H::Data>>) -> Vec<Message<H::Data>> {
        let count = messages.len();
        let span = tracing::debug_span!(
            "processor",
            pipeline = %self.context.pipeline,
            layer = self.context.layer,
            index = self.context.index,
            messages = count,
            to_batchers = tracing::field::Empty,
        );
        let started = self.activity.begin(count);
        let forward =
            tracing::Instrument::instrument(self.handle_delivery(messages), span.clone()).await;
        span.record("to_batchers", forward.len());
        self.activity.end(started, count);
        forward
    }

    /// Handles a delivery: settles what is done with, returns what goes to batchers.
    async fn handle_delivery(&self, mut messages: Vec<Message<H::Data>>) -> Vec<Message<H::Data>> {
        let handler = &*self.shared.handler;
        let prepared = call_fallible(
            Callback::PrepareMessages,
            self.timeout,
            handler.prepare_messages(&mut messages, &self.context),
        )
        .await;
        if let Err(failure) = prepared {
            for message in &mut messages {
                message.fail_with(failure.clone());
            }
            finish(&self.shared, messages).await;
            return Vec::new();
        }
        // Handled in place: messages are large to move, and most go on together.
        self.handle_each(&mut messages).await;
        let (mut any_done, mut any_routed) = (false, false);
        for message in messages.iter_mut() {
            // A failed message never reaches a batcher.
            let batcher = if message.is_failed() {
                None
            } else {
                self.route(message)
            };
            message.batcher_index = batcher.unwrap_or(NOT_ROUTED);
            any_done |= batcher.is_none();
            any_routed |= batcher.is_some();
        }
        if !any_done {
            return messages;
        }
        if !any_routed {
            finish(&self.shared, messages).await;
            return Vec::new();
        }
        let (done, forward): (Vec<_>, Vec<_>) = messages
            .into_iter()
            .partition(|message| message.batcher_index == NOT_ROUTED);
        finish(&self.shared, done).await;
        forward
    }

    /// Runs `handle_message` on each message; an error, panic or timeout fails that
    /// message alone. Without a timeout, one unwind guard covers the whole run: after a
    /// panic, the run goes on from the message after the one that panicked.
    async fn handle_each(&self, messages: &mut [Message<H::Data>]) {
        let handler = &*self.shared.handler;
        let context = &self.context;
        if let Some(limit) = self.timeout {
            for message in messages.iter_mut() {
                let hook = handler.handle_message(message, context);
                let span = tracing::trace_span!("handle_message");
                let handled = call_fallible(
                    Callback::HandleMessage,
                    Some(limit),
                    tracing::Instrument::instrument(hook, span),
                )
                .await;
                if let Err(failure) = handled {
                    message.fail_with(failure);
                }
            }
            return;
        }
        let mut next = 0;
        while next < messages.len() {
            let mut reached = next;
            let run = AssertUnwindSafe(async {
                for message in &mut messages[next..] {
                    let span = tracing::trace_span!("handle_message");
                    let hook = handler.handle_message(message, context);
                    let handled = if span.is_disabled() {
                        hook.await
                    } else {
                        tracing::Instrument::instrument(hook, span).await
                    };
                    if let Err(error) = handled {
                        message.fail_with(Failure::Error(Arc::from(error)));
                    }
                    reached += 1;
                }
            })
            .catch_unwind()
            .await;
            let Err(payload) = run else {
                return;
            };
            messages[reached].fail_with(Failure::panic(Callback::HandleMessage, &*payload));
            next = reached + 1;
        }
    }
}

/// A message that goes to no batcher: it is settled by the processor.
const NOT_ROUTED: u32 = u32::MAX;

/// With batchers, a processor passes messages on.
impl<H: Handler> ProducerConsumer for Processor<H> {
    type Input = Message<H::Data>;
    type Output = Message<H::Data>;
    type Message = ();

    async fn handle_events(
        &mut self,
        messages: Vec<Message<H::Data>>,
        _from: SubscriptionTag,
        _ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<Message<H::Data>>, BoxError> {
        Ok(self.handle(messages).await)
    }
}

/// Without batchers, a processor is the last stage: a consumer (a producer-consumer
/// with no consumers would never be asked for anything, so would take nothing in).
pub(crate) struct LastProcessor<H: Handler>(pub(crate) Processor<H>);

impl<H: Handler> Consumer for LastProcessor<H> {
    type Event = Message<H::Data>;
    type Message = ();

    async fn handle_events(
        &mut self,
        messages: Vec<Message<H::Data>>,
        _from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        // No batcher to route to: nothing is passed on.
        let forward = self.0.handle(messages).await;
        debug_assert!(forward.is_empty());
        Ok(())
    }
}
