//! The collecting consumer's hooks: each records what it sees, then does what the
//! consumer was set up to do.

use std::sync::atomic::Ordering;

use gen_stage::{
    AskMode, BoxError, CancelReason, Consumer, ConsumerContext, ExitReason, Init, SubscribeOptions,
    SubscriptionTag,
};

use super::traps::{Sprung, spring};
use super::{CollectingConsumer, Request};

impl<T: Send + 'static> CollectingConsumer<T> {
    /// Records a batch a trap sprung on: delivered, not handled.
    fn record_trapped(&self, from: SubscriptionTag, events: Vec<T>) {
        self.record
            .update(|record| record.trapped.push((from, events)));
    }
}

impl<T: Send + 'static> Consumer for CollectingConsumer<T> {
    type Event = T;
    type Message = Request;

    async fn init(&mut self, ctx: &mut ConsumerContext<'_, Self>) -> Result<Init, BoxError> {
        if self.ignores_start {
            return Ok(Init::Ignore);
        }
        let started = self.started.load(Ordering::SeqCst);
        if self.fails_to_start_from.is_some_and(|from| started >= from) {
            return Err("fails to start".into());
        }
        self.started.fetch_add(1, Ordering::SeqCst);
        if let Some(name) = self.name {
            let stage = ctx.stage_ref().clone();
            self.record
                .update(|record| record.starts.push((name, stage)));
        }
        Ok(Init::Start)
    }

    async fn handle_message(
        &mut self,
        request: Request,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match request {
            Request::Ping(reply) => reply.send(()),
            Request::Panic => panic!("panics on request"),
        }
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
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.gate.pass().await;
        match spring(&self.traps, &events) {
            None => {}
            Some(Sprung::Stop(reason)) => ctx.stop(reason),
            Some(Sprung::Panic(message)) => {
                self.record_trapped(from, events);
                panic!("{message}")
            }
            Some(Sprung::Fail(message)) => {
                self.record_trapped(from, events);
                return Err(message.into());
            }
        }
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
        let exit = (self.name.unwrap_or(""), reason.clone());
        self.record.update(|record| record.exits.push(exit));
        self.terminate_gate.pass().await;
    }
}
