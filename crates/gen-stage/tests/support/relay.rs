//! `Relay`: a producer-consumer that maps and records what it passes on, shared by the
//! suites on producer-consumers, dispatchers and buffers.

use gen_stage::kind::EmitsEvents;
use gen_stage::{
    BoxError, ProducerConsumer, ProducerConsumerContext, ProducerConsumerRef, StageRef,
    SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::Recorded;

/// A producer-consumer that maps each input to any number of outputs (by default it
/// passes events on unchanged) and records the batches it handled; a message emits its
/// events at once, and the buffer's discards are recorded.
pub(crate) struct Relay<T> {
    pub(crate) handled: Recorded<Vec<T>>,
    pub(crate) discards: Recorded<usize>,
    map: fn(T) -> Vec<T>,
}

impl<T: Clone + Send + 'static> Relay<T> {
    pub(crate) fn new(map: fn(T) -> Vec<T>) -> Self {
        Relay {
            handled: Recorded::default(),
            discards: Recorded::default(),
            map,
        }
    }

    pub(crate) fn pass_through() -> Self {
        Self::new(|event| vec![event])
    }
}

impl<T: Clone + Send + 'static> ProducerConsumer for Relay<T> {
    type Input = T;
    type Output = T;
    /// Events to emit now (beyond demand they are buffered).
    type Message = Vec<T>;

    async fn handle_events(
        &mut self,
        events: Vec<T>,
        _from: SubscriptionTag,
        _ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<T>, BoxError> {
        let output = events.iter().cloned().flat_map(self.map).collect();
        self.handled.push(events);
        Ok(output)
    }

    async fn handle_message(
        &mut self,
        events: Vec<T>,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        ctx.emit(events);
        Ok(())
    }

    fn handle_discarded(&mut self, count: usize) -> bool {
        self.discards.push(count);
        false
    }
}

/// Starts a `Relay` with `map` subscribed to `producer`; returns its handled batches.
pub(crate) async fn relay<K, T>(
    producer: &StageRef<K>,
    options: SubscribeOptions,
    map: fn(T) -> Vec<T>,
) -> (ProducerConsumerRef<Relay<T>>, Recorded<Vec<T>>)
where
    K: EmitsEvents<Out = T>,
    T: Clone + Send + 'static,
{
    let stage = Relay::new(map);
    let handled = stage.handled.clone();
    let middle = gen_stage::producer_consumer(stage)
        .subscribe_to(producer, options)
        .start()
        .await
        .expect("the relay starts");
    (middle, handled)
}

pub(crate) fn identity(x: u64) -> Vec<u64> {
    vec![x]
}
