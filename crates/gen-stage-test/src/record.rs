//! What collecting consumers saw, and the reads and waits a test makes on it.

use gen_stage::{CancelReason, ConsumerRef, ExitReason, SubscriptionTag};

use crate::collecting::CollectingConsumer;
use crate::watch::Watch;

/// What the [`CollectingConsumer`]s filling it saw, in order.
///
/// Usually one consumer fills a record. A supervised consumer fills it from each of
/// its incarnations (the clones a `ChildSpec` starts), and consumers made with
/// [`CollectingConsumer::sharing`] fill one record together, so that a test sees the
/// order of their starts and exits; [names](CollectingConsumer::named) tell them apart.
#[derive(Debug)]
pub struct Record<T: Send + 'static> {
    /// Each `handle_events` call that handled its batch: the subscription and its
    /// events, in order.
    pub batches: Vec<(SubscriptionTag, Vec<T>)>,
    /// Each batch a [`panics_on`](CollectingConsumer::panics_on) or
    /// [`fails_on`](CollectingConsumer::fails_on) trap sprung on: delivered, but not
    /// handled, so not in `batches`.
    pub trapped: Vec<(SubscriptionTag, Vec<T>)>,
    /// Subscriptions made, in order.
    pub subscriptions: Vec<SubscriptionTag>,
    /// `handle_cancel` calls, in order.
    pub cancels: Vec<(SubscriptionTag, CancelReason)>,
    /// Each start of a [named](CollectingConsumer::named) consumer (its `init`
    /// returned `Init::Start`), in order: its name and its stage's handle.
    pub starts: Vec<(&'static str, ConsumerRef<CollectingConsumer<T>>)>,
    /// Each `terminate` call, in order: the consumer's name (empty if it has none) and
    /// the reason.
    pub exits: Vec<(&'static str, ExitReason)>,
    /// Whether every consumer filling the record is gone (dropped with its stage, or
    /// with the `ChildSpec` that held it): nothing more will be recorded, and the
    /// waits below fail rather than wait forever.
    pub gone: bool,
    /// How many consumers (clones included) fill the record.
    pub(crate) consumers: usize,
}

impl<T: Send + 'static> Default for Record<T> {
    fn default() -> Self {
        Record {
            batches: Vec::new(),
            trapped: Vec::new(),
            subscriptions: Vec::new(),
            cancels: Vec::new(),
            starts: Vec::new(),
            exits: Vec::new(),
            gone: false,
            consumers: 0,
        }
    }
}

impl<T: Send + 'static> Record<T> {
    /// The reason of the last `terminate` call, if there was one.
    pub fn terminated(&self) -> Option<&ExitReason> {
        self.exits.last().map(|(_, reason)| reason)
    }
}

impl<T: Clone + Send + 'static> Watch<Record<T>> {
    /// Every event handled, in order.
    pub fn events(&self) -> Vec<T> {
        self.read(|record| {
            record
                .batches
                .iter()
                .flat_map(|(_, batch)| batch.iter().cloned())
                .collect()
        })
    }

    /// The batches handled, in order, without their subscriptions.
    pub fn batches(&self) -> Vec<Vec<T>> {
        self.read(|record| record.batches.iter().map(|(_, b)| b.clone()).collect())
    }
}

impl<T: Send + 'static> Watch<Record<T>> {
    /// The size of each batch handled, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.read(|record| record.batches.iter().map(|(_, b)| b.len()).collect())
    }

    /// How many events were handled.
    pub fn event_count(&self) -> usize {
        self.read(|record| record.batches.iter().map(|(_, batch)| batch.len()).sum())
    }

    /// The reason of the last `terminate` call, if there was one.
    pub fn terminated(&self) -> Option<ExitReason> {
        self.read(|record| record.terminated().cloned())
    }

    /// The `handle_cancel` calls so far.
    pub fn cancels(&self) -> Vec<(SubscriptionTag, CancelReason)> {
        self.read(|record| record.cancels.clone())
    }

    /// The handle of each start of the consumer named `name`, in order: the last is
    /// its latest incarnation.
    ///
    /// ```
    /// use gen_stage::ExitReason;
    /// use gen_stage::supervision::{ChildSpec, Supervisor};
    /// use gen_stage_test::{CollectingConsumer, Request};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let (worker, record) = CollectingConsumer::<u64>::new();
    /// let worker = worker.named("worker");
    /// let spec = ChildSpec::new("worker", move || gen_stage::consumer(worker.clone()).start());
    /// let supervisor = Supervisor::new().child(spec).start().await?;
    ///
    /// let first = record.incarnations("worker").pop().expect("started");
    /// first.cast(Request::Panic)?;
    /// record.wait_for_starts(2).await;
    /// let second = record.incarnations("worker").pop().expect("restarted");
    /// assert_ne!(first.id(), second.id());
    /// assert_eq!(record.terminated(), Some(ExitReason::Panic("panics on request".into())));
    /// # supervisor.stop(ExitReason::Shutdown).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn incarnations(&self, name: &str) -> Vec<ConsumerRef<CollectingConsumer<T>>> {
        self.read(|record| {
            let named = record.starts.iter().filter(|(start, _)| *start == name);
            named.map(|(_, stage)| stage.clone()).collect()
        })
    }

    /// Waits until `condition` holds.
    ///
    /// # Panics
    ///
    /// If every consumer filling the record is gone first: nothing more will be
    /// recorded.
    pub async fn wait_for(&self, what: &str, mut condition: impl FnMut(&Record<T>) -> bool) {
        self.wait_until(|record| condition(record) || record.gone)
            .await;
        if !self.read(&mut condition) {
            let reason = self.terminated();
            panic!("the consumer is gone ({reason:?}) before {what}");
        }
    }

    /// Waits until at least `count` events were handled.
    ///
    /// # Panics
    ///
    /// If the consumer is gone first.
    pub async fn wait_for_events(&self, count: usize) {
        let what = format!("{count} events");
        self.wait_for(&what, |record| {
            record.batches.iter().map(|(_, b)| b.len()).sum::<usize>() >= count
        })
        .await;
    }

    /// Waits until at least `count` subscriptions were made, and returns their tags.
    ///
    /// # Panics
    ///
    /// If the consumer is gone first.
    pub async fn wait_for_subscriptions(&self, count: usize) -> Vec<SubscriptionTag> {
        let what = format!("{count} subscriptions");
        self.wait_for(&what, |record| record.subscriptions.len() >= count)
            .await;
        self.read(|record| record.subscriptions.clone())
    }

    /// Waits until at least `count` cancellations were handled.
    ///
    /// # Panics
    ///
    /// If the consumer is gone first.
    pub async fn wait_for_cancels(&self, count: usize) -> Vec<(SubscriptionTag, CancelReason)> {
        let what = format!("{count} cancellations");
        self.wait_for(&what, |record| record.cancels.len() >= count)
            .await;
        self.cancels()
    }

    /// Waits until named consumers filling the record have started at least `count`
    /// times in all (restarts included).
    ///
    /// # Panics
    ///
    /// If every consumer filling the record is gone first.
    pub async fn wait_for_starts(&self, count: usize) {
        let what = format!("{count} starts");
        self.wait_for(&what, |record| record.starts.len() >= count)
            .await;
    }
}
