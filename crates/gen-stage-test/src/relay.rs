//! A producer-consumer that records what it passes on.

use std::fmt;

use gen_stage::{BoxError, ProducerConsumer, ProducerConsumerContext, SubscriptionTag};

use crate::gate::Gate;
use crate::watch::Recorded;

/// A producer-consumer that maps each event it receives to any number of events it
/// emits, and records the batches it handled and the discards of its buffer: the
/// middle of a pipeline under test.
///
/// A message to it (`Vec<T>`) emits those events at once, whatever the demand:
/// beyond the demand they go to its buffer, whose discards it records (and does not
/// log).
///
/// ```
/// use gen_stage::SubscribeOptions;
/// use gen_stage_test::{CollectingConsumer, Relay};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// let producer = gen_stage::source::from_iter(1..=3u64).start().await?;
/// let relay = Relay::new(|n| vec![n; n as usize]);
/// let handled = relay.handled();
/// let relay = gen_stage::producer_consumer(relay)
///     .subscribe_to(&producer, SubscribeOptions::new())
///     .start()
///     .await?;
/// let (consumer, record) = CollectingConsumer::new();
/// gen_stage::consumer(consumer)
///     .subscribe_to(&relay, SubscribeOptions::new())
///     .start()
///     .await?;
/// record.wait_for_events(6).await;
/// assert_eq!(record.events(), vec![1, 2, 2, 3, 3, 3]);
/// assert_eq!(handled.snapshot().concat(), vec![1, 2, 3]);
/// # Ok(())
/// # }
/// ```
pub struct Relay<T> {
    handled: Recorded<Vec<T>>,
    discards: Recorded<usize>,
    map: fn(T) -> Vec<T>,
    gate: Gate,
}

impl<T> fmt::Debug for Relay<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay").finish_non_exhaustive()
    }
}

impl<T: Clone + Send + 'static> Relay<T> {
    /// A relay that emits `map(event)` for each event it receives.
    #[must_use]
    pub fn new(map: fn(T) -> Vec<T>) -> Self {
        Relay {
            handled: Recorded::default(),
            discards: Recorded::default(),
            map,
            gate: Gate::opened(),
        }
    }

    /// Waits for a pass of `gate` in each batch, after recording it as handled and
    /// before passing its events on: a stage caught in the middle of its work.
    ///
    /// ```
    /// use gen_stage::SubscribeOptions;
    /// use gen_stage_test::{CollectingConsumer, Gate, Relay};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let producer = gen_stage::source::from_iter(0..10u64).start().await?;
    /// let gate = Gate::closed();
    /// let relay = Relay::pass_through().gated(gate.clone());
    /// let handled = relay.handled();
    /// let relay = gen_stage::producer_consumer(relay)
    ///     .subscribe_to(&producer, SubscribeOptions::new().max_demand(4))
    ///     .start()
    ///     .await?;
    /// let (consumer, record) = CollectingConsumer::new();
    /// gen_stage::consumer(consumer)
    ///     .subscribe_to(&relay, SubscribeOptions::new())
    ///     .start()
    ///     .await?;
    /// // Its first batch came in; it waits at the gate with it.
    /// handled.wait_for_len(1).await;
    /// assert_eq!(handled.snapshot(), vec![vec![0, 1]]);
    /// assert!(record.events().is_empty(), "nothing passed on yet");
    /// gate.open_for_good();
    /// record.wait_for_events(10).await;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn gated(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }

    /// A relay that passes each event on unchanged.
    #[must_use]
    pub fn pass_through() -> Self {
        Self::new(|event| vec![event])
    }

    /// The batches it handled, as they came in, in order.
    pub fn handled(&self) -> Recorded<Vec<T>> {
        self.handled.clone()
    }

    /// Each discard of its buffer: how many events it dropped.
    pub fn discards(&self) -> Recorded<usize> {
        self.discards.clone()
    }
}

impl<T: Clone + Send + 'static> ProducerConsumer for Relay<T> {
    type Input = T;
    type Output = T;
    /// Events to emit now (beyond the demand they are buffered).
    type Message = Vec<T>;

    async fn handle_events(
        &mut self,
        events: Vec<T>,
        _from: SubscriptionTag,
        _ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<T>, BoxError> {
        let output = events.iter().cloned().flat_map(self.map).collect();
        self.handled.push(events);
        self.gate.pass().await;
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
