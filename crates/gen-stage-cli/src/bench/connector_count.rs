//! The connector rows' handler: trivial work on each message, and a wake-up at the
//! last one.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage::source::{Fetch, FetchProducer};
use gen_stage_pipeline::{
    Handler, Message, PipelineBuilder, PipelineReport, ProcessorContext, ProcessorOptions,
};
use tokio::sync::Notify;

/// Drains `messages` through the connector rows' pipeline: `producer`, two processors
/// asking `batch` at a time (half of it again once they are half done), a [`Count`]
/// as handler. Returns the drain's report once every message was handled.
pub(crate) async fn drain_through<T, F>(
    messages: u64,
    batch: usize,
    producer: impl Fn() -> FetchProducer<F> + Send + Sync + 'static,
) -> Result<PipelineReport, BoxError>
where
    T: Send + 'static,
    F: Fetch<Item = Message<T>>,
{
    let count = Arc::new(Count::<T>::new(messages));
    let pipeline = PipelineBuilder::new(count.clone())
        .producer(producer)
        .processors(
            ProcessorOptions::new()
                .concurrency(2)
                .max_demand(batch)
                .min_demand(batch / 2),
        )
        .start()
        .await?;
    count.all_handled().await;
    Ok(pipeline.drain(Duration::from_secs(60)).await)
}

/// Counts the messages it handles (`T`: the connector's data); wakes
/// [`all_handled`](Count::all_handled) at the last.
pub(crate) struct Count<T> {
    handled: AtomicU64,
    all: u64,
    done: Notify,
    data: PhantomData<fn(T)>,
}

impl<T> Count<T> {
    /// A count that ends at `all` messages.
    pub(crate) fn new(all: u64) -> Self {
        Count {
            handled: AtomicU64::new(0),
            all,
            done: Notify::new(),
            data: PhantomData,
        }
    }

    /// Completes once `all` messages were handled (or at once if they were).
    pub(crate) async fn all_handled(&self) {
        let done = self.done.notified();
        tokio::pin!(done);
        done.as_mut().enable();
        if self.handled.load(Ordering::Acquire) < self.all {
            done.await;
        }
    }
}

impl<T: Send + 'static> Handler for Count<T> {
    type Data = T;

    async fn handle_message(
        &self,
        message: &mut Message<T>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        std::hint::black_box(message.data());
        if self.handled.fetch_add(1, Ordering::AcqRel) + 1 == self.all {
            self.done.notify_waiters();
        }
        Ok(())
    }
}
