//! A consumer that records everything it sees.

use std::fmt;

use gen_stage::{
    AskMode, BoxError, CancelReason, Consumer, ConsumerContext, ExitReason, ReplyTo,
    SubscribeOptions, SubscriptionTag,
};

use crate::gate::Gate;
use crate::record::{Record, Watch};

/// A consumer that records its batches, subscriptions, cancellations and exit in a
/// shared [`Record`].
///
/// By default it uses automatic demand and handles batches at once. [`manual`] makes
/// its subscriptions manual (ask with [`StageRef::ask`]); [`gated`] makes each
/// `handle_events` wait for a pass of a [`Gate`] first, which holds the consumer busy
/// for as long as the test needs.
///
/// [`manual`]: CollectingConsumer::manual
/// [`gated`]: CollectingConsumer::gated
/// [`StageRef::ask`]: gen_stage::StageRef::ask
#[must_use]
pub struct CollectingConsumer<T> {
    record: Watch<Record<T>>,
    ask_mode: AskMode,
    gate: Gate,
}

impl<T> fmt::Debug for CollectingConsumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectingConsumer")
            .field("ask_mode", &self.ask_mode)
            .finish_non_exhaustive()
    }
}

impl<T> Drop for CollectingConsumer<T> {
    /// The stage is gone (stopped, or killed): waits on the record stop waiting.
    fn drop(&mut self) {
        self.record.update(|record| record.gone = true);
    }
}

impl<T: Send + 'static> CollectingConsumer<T> {
    /// A consumer and the record it fills.
    pub fn new() -> (Self, Watch<Record<T>>) {
        let record = Watch::default();
        let consumer = CollectingConsumer {
            record: record.clone(),
            ask_mode: AskMode::Automatic,
            gate: Gate::opened(),
        };
        (consumer, record)
    }

    /// Subscribes with manual demand.
    pub fn manual(mut self) -> Self {
        self.ask_mode = AskMode::Manual;
        self
    }

    /// Waits for a pass of `gate` before handling each batch.
    pub fn gated(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }
}

/// A call a [`CollectingConsumer`] answers at once: once it returns, every message
/// sent to the consumer before it has been handled.
///
/// ```
/// # use gen_stage_test::{CollectingConsumer, Ping};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (consumer, _record) = CollectingConsumer::<u64>::new();
/// let consumer = gen_stage::consumer(consumer).start().await.unwrap();
/// consumer.call(Ping).await.unwrap();
/// # }
/// ```
#[derive(Debug)]
pub struct Ping(pub ReplyTo<()>);

impl<T: Send + 'static> Consumer for CollectingConsumer<T> {
    type Event = T;
    type Message = Ping;

    async fn handle_message(
        &mut self,
        Ping(reply): Ping,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        reply.send(());
        Ok(())
    }

    async fn handle_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        _options: &SubscribeOptions,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<AskMode, BoxError> {
        self.record.update(|record| record.subscriptions.push(tag));
        Ok(self.ask_mode)
    }

    async fn handle_events(
        &mut self,
        events: Vec<T>,
        from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.gate.pass().await;
        self.record
            .update(|record| record.batches.push((from, events)));
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let reason = reason.clone();
        self.record
            .update(|record| record.cancels.push((tag, reason)));
        Ok(())
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        let reason = reason.clone();
        self.record
            .update(|record| record.terminated = Some(reason));
    }
}
