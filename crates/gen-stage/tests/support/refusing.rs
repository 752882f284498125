//! `Refusing`: a producer that turns every consumer away, for the suites on subscription
//! errors (`stage_calls`, `stream_interop`).

use std::marker::PhantomData;

use gen_stage::{BoxError, Producer, ProducerContext, SubscribeOptions, SubscriptionTag};

/// A producer that emits nothing and refuses every subscription with `reason`.
pub(crate) struct Refusing<T> {
    reason: &'static str,
    events: PhantomData<fn() -> T>,
}

impl<T> Refusing<T> {
    pub(crate) fn new(reason: &'static str) -> Self {
        Refusing {
            reason,
            events: PhantomData,
        }
    }
}

impl<T: Send + 'static> Producer for Refusing<T> {
    type Event = T;
    type Message = ();

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<T>, BoxError> {
        Ok(Vec::new())
    }

    async fn handle_consumer_subscribed(
        &mut self,
        _tag: SubscriptionTag,
        _options: &SubscribeOptions,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        Err(self.reason.into())
    }
}
