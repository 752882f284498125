//! Producers made from iterators and streams.

use std::fmt;
use std::future::Future;

use futures::{FutureExt, Stream, StreamExt};

use crate::builder::{ProducerBuilder, producer};
use crate::context::ProducerContext;
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::options::SubscribeOptions;
use crate::stage::Producer;
use crate::subscription::SubscriptionTag;

/// What a source producer does when its last consumer cancels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnCancel {
    /// Keep running and wait for new consumers (the default).
    #[default]
    Continue,
    /// Stop with [`ExitReason::Normal`].
    Stop,
}

/// Where a [`SourceProducer`] takes its events from.
pub trait Source: Send + 'static {
    /// The events.
    type Item: Send + 'static;

    /// Takes up to `count` items, at least one unless the source is exhausted; also says
    /// whether it is. A source whose items come over time (a stream) returns what is
    /// ready rather than wait for `count`: the producer pulls again for the rest.
    fn pull(&mut self, count: usize) -> impl Future<Output = (Vec<Self::Item>, bool)> + Send;
}

/// A [`Source`] over an iterator.
#[derive(Debug)]
pub struct IterSource<I>(I);

impl<I: Iterator> IterSource<I> {
    /// A source over `iter`.
    pub fn new(iter: I) -> Self {
        IterSource(iter)
    }
}

impl<I> Source for IterSource<I>
where
    I: Iterator + Send + 'static,
    I::Item: Send + 'static,
{
    type Item = I::Item;

    async fn pull(&mut self, count: usize) -> (Vec<I::Item>, bool) {
        let items: Vec<I::Item> = self.0.by_ref().take(count).collect();
        let exhausted = items.len() < count;
        (items, exhausted)
    }
}

/// A [`Source`] over a stream.
#[derive(Debug)]
pub struct StreamSource<St>(St);

impl<St: Stream> StreamSource<St> {
    /// A source over `stream`.
    pub fn new(stream: St) -> Self {
        StreamSource(stream)
    }
}

impl<St> Source for StreamSource<St>
where
    St: Stream + Send + Unpin + 'static,
    St::Item: Send + 'static,
{
    type Item = St::Item;

    async fn pull(&mut self, count: usize) -> (Vec<St::Item>, bool) {
        // Waits for the first item only, then takes what is ready: a stream fed over
        // time (a channel, a socket) delivers its items as they come, not once `count`
        // of them have arrived.
        let mut items = Vec::new();
        match self.0.next().await {
            Some(item) => items.push(item),
            None => return (items, true),
        }
        while items.len() < count {
            match self.0.next().now_or_never() {
                Some(Some(item)) => items.push(item),
                Some(None) => return (items, true),
                None => break,
            }
        }
        (items, false)
    }
}

/// A producer that emits what a [`Source`] yields, as fast as demand allows, and
/// stops normally once the source is exhausted and its last events are dispatched.
///
/// Made by [`from_iter`] and [`from_stream`]. It emits what a stream has ready, then
/// pulls again for the rest of the demand after a turn through its mailbox. While a
/// stream has nothing ready, the stage waits inside the pull for its next item and
/// answers nothing meanwhile: to stop it then, end the stream or
/// [`kill`](crate::StageRef::kill) the stage.
#[must_use]
pub struct SourceProducer<S> {
    source: S,
    exhausted: bool,
    on_cancel: OnCancel,
    consumers: usize,
    /// Demand not yet served.
    pending: usize,
    /// A [`SourceMessage`] to pull again is in the mailbox.
    pull_queued: bool,
}

impl<S> fmt::Debug for SourceProducer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceProducer")
            .field("exhausted", &self.exhausted)
            .field("on_cancel", &self.on_cancel)
            .field("consumers", &self.consumers)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl<S: Source> SourceProducer<S> {
    /// A producer over `source`.
    pub fn new(source: S) -> Self {
        SourceProducer {
            source,
            exhausted: false,
            on_cancel: OnCancel::Continue,
            consumers: 0,
            pending: 0,
            pull_queued: false,
        }
    }

    /// What to do when the last consumer cancels (default [`OnCancel::Continue`]).
    pub fn on_cancel(mut self, on_cancel: OnCancel) -> Self {
        self.on_cancel = on_cancel;
        self
    }
}

/// The messages a source producer sends itself: to pull again for demand a stream
/// did not fill, and, once exhausted, to stop after the last events have left the
/// buffer.
#[derive(Debug)]
pub struct SourceMessage(SourceStep);

#[derive(Debug)]
enum SourceStep {
    PullAgain,
    Exhausted,
}

impl<S: Source> SourceProducer<S> {
    /// Pulls for the pending demand and emits what came.
    async fn pull(&mut self, ctx: &mut ProducerContext<'_, Self>) {
        if self.exhausted || self.pending == 0 {
            return;
        }
        let (items, exhausted) = self.source.pull(self.pending).await;
        self.pending = self.pending.saturating_sub(items.len());
        // Emitted before the messages below, so that they come after these events.
        ctx.emit(items);
        if exhausted {
            self.exhausted = true;
            let _ = ctx
                .stage_ref()
                .async_info(SourceMessage(SourceStep::Exhausted));
        } else if self.pending > 0 && !self.pull_queued {
            self.pull_queued = ctx
                .stage_ref()
                .cast(SourceMessage(SourceStep::PullAgain))
                .is_ok();
        }
    }
}

impl<S: Source> Producer for SourceProducer<S> {
    type Event = S::Item;
    type Message = SourceMessage;

    async fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<S::Item>, BoxError> {
        self.pending = self.pending.saturating_add(demand);
        if !self.pull_queued {
            self.pull(ctx).await;
        }
        Ok(Vec::new())
    }

    async fn handle_consumer_subscribed(
        &mut self,
        _tag: SubscriptionTag,
        _options: &SubscribeOptions,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.consumers += 1;
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        _tag: SubscriptionTag,
        _reason: &CancelReason,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.consumers = self.consumers.saturating_sub(1);
        if self.consumers == 0 && self.on_cancel == OnCancel::Stop {
            ctx.stop(ExitReason::Normal);
        }
        Ok(())
    }

    async fn handle_message(
        &mut self,
        message: SourceMessage,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message.0 {
            SourceStep::PullAgain => {
                self.pull_queued = false;
                self.pull(ctx).await;
            }
            SourceStep::Exhausted => ctx.stop(ExitReason::Normal),
        }
        Ok(())
    }
}

/// A producer of the items of `iter`; it stops normally once they are all dispatched.
///
/// ```
/// use futures::StreamExt;
/// use gen_stage::SubscribeOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// let numbers = gen_stage::from_iter(1..=5).start().await?;
/// let stream = gen_stage::stream(&numbers, SubscribeOptions::new().max_demand(2))?;
/// assert_eq!(stream.collect::<Vec<_>>().await, vec![1, 2, 3, 4, 5]);
/// # Ok(())
/// # }
/// ```
pub fn from_iter<I>(iter: I) -> ProducerBuilder<SourceProducer<IterSource<I::IntoIter>>>
where
    I: IntoIterator,
    I::IntoIter: Send + 'static,
    I::Item: Send + 'static,
{
    producer(SourceProducer::new(IterSource(iter.into_iter())))
}

/// A producer of the items of `stream`; it stops normally once they are all
/// dispatched.
pub fn from_stream<St>(stream: St) -> ProducerBuilder<SourceProducer<StreamSource<St>>>
where
    St: Stream + Send + Unpin + 'static,
    St::Item: Send + 'static,
{
    producer(SourceProducer::new(StreamSource(stream)))
}
