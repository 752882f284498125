//! A producer the test drives with messages.

use std::collections::VecDeque;
use std::fmt;

use gen_stage::{
    BoxError, CancelReason, ExitReason, Producer, ProducerContext, ReplyTo, SubscribeOptions,
    SubscriptionTag,
};

use crate::record::Watch;

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

/// A producer that emits what the test queues, as demand allows.
pub struct ScriptedProducer<T> {
    queue: VecDeque<T>,
    owed: usize,
    record: Watch<ProducerRecord>,
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
        };
        (producer, record)
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
