//! Messages pushed into a running pipeline beside its producers, with a future of
//! their outcomes: how a user tests their callbacks without a broker.

use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use crate::ack::{AckError, AckGroup, AckTag, Acknowledger, Settled};
use crate::message::Message;
use crate::pipeline::Pipeline;

/// Sends the outcomes of test messages back to the test.
struct Collector(mpsc::UnboundedSender<Settled>);

impl Acknowledger for Collector {
    async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
        for outcome in settled {
            // The test stopped waiting: nothing to tell.
            let _ = self.0.send(outcome);
        }
        Ok(())
    }
}

impl<T: Send + 'static> Pipeline<T> {
    /// Pushes `data` into the pipeline as a message, beside its producers (whatever
    /// they are: the message does not go through them, nor through a rate limit), and
    /// returns how it ended: its [`Settled::outcome`], and its failure if it failed.
    ///
    /// It works under `tokio::time::pause`: batch timeouts and retry delays pass
    /// without sleeping. The message is not retried (no source keeps it): a failure
    /// is reported with the outcome the pipeline chose.
    ///
    /// ```
    /// use gen_stage::BoxError;
    /// use gen_stage_pipeline::{Handler, MemoryQueue, Message, Outcome, Pipeline, ProcessorContext};
    ///
    /// struct Even;
    ///
    /// impl Handler for Even {
    ///     type Data = u64;
    ///
    ///     async fn handle_message(&self, message: &mut Message<u64>, _: &ProcessorContext) -> Result<(), BoxError> {
    ///         if message.data() % 2 == 1 {
    ///             return Err("odd".into());
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), BoxError> {
    /// let queue = MemoryQueue::<u64>::new(); // the real source: empty in this test
    /// let source = queue.clone();
    /// let pipeline = Pipeline::builder(Even).producer(move || source.producer()).start().await?;
    /// assert_eq!(pipeline.test_message(2).await.outcome, Outcome::Ack);
    /// let failed = pipeline.test_message(3).await;
    /// assert!(matches!(failed.outcome, Outcome::Retry { .. }));
    /// assert_eq!(failed.failure.map(|f| f.to_string()).as_deref(), Some("odd"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn test_message(&self, data: T) -> Settled {
        let mut outcomes = self.test_batch([data]).await;
        outcomes.remove(0)
    }

    /// Pushes messages into the pipeline at once, as [`Pipeline::test_message`] does
    /// one, and returns their outcomes in the order of `data` (each with its index as
    /// its tag).
    pub async fn test_batch(&self, data: impl IntoIterator<Item = T>) -> Vec<Settled> {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let group = AckGroup::new(Collector(sender));
        let messages: Vec<Message<T>> = data
            .into_iter()
            .enumerate()
            .map(|(index, data)| Message::new(data, group.handle(AckTag(index as u64))))
            .collect();
        let count = messages.len();
        if count > 0 && !self.pushers.is_empty() {
            let next = self.next_push.fetch_add(1, Ordering::Relaxed) % self.pushers.len();
            // A pipeline that stopped drops the messages: they come back released.
            let pusher = crate::sync::lock(&self.pushers[next]).clone();
            let _ = pusher(messages);
        }
        // Every message ends in one outcome (one the pipeline never took in is
        // released when dropped); the group may outlive them (a producer remembers
        // the last group it bound), so the outcomes are counted, not the channel's end.
        let mut outcomes = Vec::with_capacity(count);
        while outcomes.len() < count {
            match receiver.recv().await {
                Some(settled) => outcomes.push(settled),
                None => break,
            }
        }
        outcomes.sort_by_key(|settled| settled.tag);
        outcomes
    }
}
