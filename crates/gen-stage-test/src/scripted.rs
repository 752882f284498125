//! A producer the test drives with messages.

use std::collections::VecDeque;
use std::fmt;

use gen_stage::{
    BoxError, CancelReason, ExitReason, Producer, ProducerContext, ReplyTo, SubscribeOptions,
    SubscriptionTag,
};

use crate::watch::Watch;

/// Messages that drive a [`ScriptedProducer`].
pub enum Script<T> {
    /// Events to hand out as demand allows (demand it could not meet is remembered).
    Queue(Vec<T>),
    /// Events to emit now, whatever the demand (beyond demand they are buffered). They
    /// do not count against the demand owed, which only `Queue` serves.
    Emit(Vec<T>),
    /// Emit these events, then reply (events reach consumers before the reply).
    EmitThenReply(Vec<T>, ReplyTo<()>),
    /// Stop with this reason.
    Stop(ExitReason),
    /// Replies with the demand owed and not yet met.
    Owed(ReplyTo<usize>),
}

impl<T> fmt::Debug for Script<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Script::Queue(events) => write!(f, "Queue({} events)", events.len()),
            Script::Emit(events) => write!(f, "Emit({} events)", events.len()),
            Script::EmitThenReply(events, _) => write!(f, "EmitThenReply({} events)", events.len()),
            Script::Stop(reason) => write!(f, "Stop({reason})"),
            Script::Owed(_) => f.write_str("Owed"),
        }
    }
}

/// What a [`ScriptedProducer`] saw.
#[derive(Clone, Debug, Default)]
pub struct ProducerRecord {
    /// Each `handle_demand` call's demand, in order.
    pub demands: Vec<usize>,
    /// Consumers that subscribed, in order.
    pub subscriptions: Vec<SubscriptionTag>,
    /// `handle_cancel` calls, in order.
    pub cancels: Vec<(SubscriptionTag, CancelReason)>,
    /// Each discard the buffer reported.
    pub discards: Vec<usize>,
}

impl Watch<ProducerRecord> {
    /// Waits until at least `count` cancellations were handled, and returns them.
    ///
    /// # Panics
    ///
    /// If they do not come within [`WAIT_LIMIT`](crate::WAIT_LIMIT).
    pub async fn wait_for_cancels(&self, count: usize) -> Vec<(SubscriptionTag, CancelReason)> {
        self.wait_until(|record| record.cancels.len() >= count)
            .await;
        self.read(|record| record.cancels.clone())
    }
}

/// A producer that emits what the test queues, as demand allows.
pub struct ScriptedProducer<T> {
    queue: VecDeque<T>,
    owed: usize,
    record: Watch<ProducerRecord>,
    /// Why it refuses every subscription, if it does.
    refusal: Option<&'static str>,
}

impl<T> fmt::Debug for ScriptedProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedProducer")
            .field("queued", &self.queue.len())
            .field("owed", &self.owed)
            .finish()
    }
}

impl<T: Send + 'static> ScriptedProducer<T> {
    /// A producer with nothing queued, and its record.
    pub fn new() -> (Self, Watch<ProducerRecord>) {
        Self::with_queue(Vec::new())
    }

    /// A producer with `events` queued, and its record.
    pub fn with_queue(events: Vec<T>) -> (Self, Watch<ProducerRecord>) {
        let record = Watch::default();
        let producer = ScriptedProducer {
            queue: events.into(),
            owed: 0,
            record: record.clone(),
            refusal: None,
        };
        (producer, record)
    }

    /// Refuses every subscription, with `reason` as the error of
    /// `handle_consumer_subscribed` (refused subscriptions are not recorded).
    ///
    /// ```
    /// use gen_stage::SubscribeOptions;
    /// use gen_stage::error::SubscribeError;
    /// use gen_stage_test::{CollectingConsumer, ScriptedProducer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let (full, _record) = ScriptedProducer::<u64>::new();
    /// let full = gen_stage::producer(full.refuses_subscriptions("no room")).start().await?;
    /// let (consumer, _record) = CollectingConsumer::new();
    /// let consumer = gen_stage::consumer(consumer).start().await?;
    /// match consumer.subscribe_to(&full, SubscribeOptions::new()).await {
    ///     Err(SubscribeError::Rejected(error)) => assert_eq!(error.to_string(), "no room"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn refuses_subscriptions(mut self, reason: &'static str) -> Self {
        self.refusal = Some(reason);
        self
    }

    fn take_owed(&mut self) -> Vec<T> {
        let count = self.owed.min(self.queue.len());
        self.owed -= count;
        self.queue.drain(..count).collect()
    }
}

impl<T: Send + 'static> Producer for ScriptedProducer<T> {
    type Event = T;
    type Message = Script<T>;

    async fn handle_demand(
        &mut self,
        demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<T>, BoxError> {
        self.record.update(|record| record.demands.push(demand));
        self.owed = self.owed.saturating_add(demand);
        Ok(self.take_owed())
    }

    async fn handle_consumer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        _options: &SubscribeOptions,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        if let Some(reason) = self.refusal {
            return Err(reason.into());
        }
        self.record.update(|record| record.subscriptions.push(tag));
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        let reason = reason.clone();
        self.record
            .update(|record| record.cancels.push((tag, reason)));
        Ok(())
    }

    async fn handle_message(
        &mut self,
        message: Script<T>,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message {
            Script::Queue(events) => {
                self.queue.extend(events);
                let ready = self.take_owed();
                ctx.emit(ready);
            }
            Script::Emit(events) => ctx.emit(events),
            Script::EmitThenReply(events, reply) => {
                ctx.emit(events);
                reply.send(());
            }
            Script::Stop(reason) => ctx.stop(reason),
            Script::Owed(reply) => reply.send(self.owed),
        }
        Ok(())
    }

    fn handle_discarded(&mut self, count: usize) -> bool {
        self.record.update(|record| record.discards.push(count));
        true
    }
}
