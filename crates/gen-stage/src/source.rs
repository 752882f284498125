//! Producers made from iterators and streams.

use std::fmt;
use std::future::Future;

use futures::{Stream, StreamExt};

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

    /// Takes up to `count` items; also says whether the source is exhausted.
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
        let mut items = Vec::with_capacity(count.min(4096));
        while items.len() < count {
            match self.0.next().await {
                Some(item) => items.push(item),
                None => return (items, true),
            }
        }
        (items, false)
    }
}

/// A producer that emits what a [`Source`] yields, as fast as demand allows, and
/// stops normally once the source is exhausted and its last events are dispatched.
///
/// Made by [`from_iter`] and [`from_stream`]. A stream that is not ready holds the
/// stage inside `handle_demand` until it is.
#[must_use]
pub struct SourceProducer<S> {
    source: S,
    exhausted: bool,
    on_cancel: OnCancel,
    consumers: usize,
}

impl<S> fmt::Debug for SourceProducer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceProducer")
            .field("exhausted", &self.exhausted)
            .field("on_cancel", &self.on_cancel)
            .field("consumers", &self.consumers)
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
        }
    }

    /// What to do when the last consumer cancels (default [`OnCancel::Continue`]).
    pub fn on_cancel(mut self, on_cancel: OnCancel) -> Self {
        self.on_cancel = on_cancel;
        self
    }
}

/// The message a source producer sends itself once exhausted: it arrives after the
/// last events have left the buffer.
#[derive(Debug)]
pub struct Exhausted(());

impl<S: Source> Producer for SourceProducer<S> {
    type Event = S::Item;
    type Message = Exhausted;

    async fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<S::Item>, BoxError> {
        if self.exhausted {
            return Ok(Vec::new());
        }
        let (items, exhausted) = self.source.pull(demand).await;
        if exhausted {
            self.exhausted = true;
            // Emit first, so that the info is queued behind any event left in the buffer.
            ctx.emit(items);
            let _ = ctx.stage_ref().async_info(Exhausted(()));
            return Ok(Vec::new());
        }
        Ok(items)
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
        _message: Exhausted,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        ctx.stop(ExitReason::Normal);
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
