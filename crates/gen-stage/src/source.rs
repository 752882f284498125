//! Producers made from data that comes from outside the pipeline: an iterator, a
//! `futures::Stream`, or a source that waits for its items (a broker client).
//!
//! Each kind of source has a function that returns the producer's builder, a producer
//! stage that serves demand from the source, and the messages the stage sends itself
//! (opaque: its [`Producer::Message`]):
//!
//! | source | function | producer | use it for |
//! | --- | --- | --- | --- |
//! | an iterator | [`from_iter`] | [`SourceProducer`] over an [`IterSource`] | data at hand; a finite one stops the producer normally once out |
//! | a [`Source`] of your own | [`SourceProducer::new`] | [`SourceProducer`] | items taken on demand, without waiting (`pull` runs in the stage's task) |
//! | a `futures::Stream` | [`from_stream`] | [`StreamProducer`] | items that come over time; a task of its own polls the stream |
//! | a [`Fetch`] source | [`from_fetch`] | [`FetchProducer`] | a source that waits (long polls, claims of rows), with a prefetch and a way to give back what was fetched and not emitted |
//!
//! A source producer is a [`Producer`] like any other: give it a
//! dispatcher, a name, subscribers. [`OnCancel`] says whether it stops when its last
//! consumer leaves; [`OnFetchError`] what a [`Fetch`] source does after a failed fetch.
//! [`MemorySource`] is an in-memory queue to fetch from, the test double of a broker.
//!
//! ```
//! use futures::StreamExt;
//! use gen_stage::SubscribeOptions;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), gen_stage::BoxError> {
//! let words = gen_stage::source::from_iter(["back", "pressure"]).start().await?;
//! let events = gen_stage::stream::subscribe(&words, SubscribeOptions::new())?;
//! assert_eq!(events.collect::<Vec<_>>().await, ["back", "pressure"]);
//! # Ok(())
//! # }
//! ```
//!
//! The other way round, producers consumed as a `futures::Stream`, is
//! [`stream::subscribe`](crate::stream::subscribe).

mod fetch;
mod stream;

pub use fetch::{
    Fetch, FetchMessage, FetchProducer, Fetched, MemorySource, OnFetchError, from_fetch,
};
pub use stream::{StreamMessage, StreamProducer, from_stream};

use std::fmt;
use std::future::Future;

use crate::builder::{ProducerBuilder, producer};
use crate::context::{Context, ProducerContext};
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::kind::StageKind;
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

/// How many consumers a source producer has, and what it does when the last leaves.
#[derive(Clone, Copy, Debug, Default)]
struct Consumers {
    on_cancel: OnCancel,
    count: usize,
}

impl Consumers {
    fn joined(&mut self) {
        self.count += 1;
    }

    /// A consumer left: with [`OnCancel::Stop`], the last one stops the stage normally.
    fn left<K: StageKind>(&mut self, ctx: &mut Context<'_, K>) {
        self.count = self.count.saturating_sub(1);
        if self.count == 0 && self.on_cancel == OnCancel::Stop {
            ctx.stop(ExitReason::Normal);
        }
    }
}

/// Where a [`SourceProducer`] takes its events from.
pub trait Source: Send + 'static {
    /// The events.
    type Item: Send + 'static;

    /// Takes up to `count` items, at least one unless the source is exhausted; also says
    /// whether it is. A source may return fewer than `count`: the producer pulls again
    /// for the rest after a turn through its mailbox.
    ///
    /// `pull` runs inside the stage's task, which answers nothing (calls,
    /// subscriptions, [`stop`](crate::StageRef::stop)) until it returns: it must not
    /// wait for items that come over time. Give those as a stream to [`from_stream`],
    /// which polls it on a task of its own, or implement [`Fetch`] for a source that
    /// waits (a broker client), which [`from_fetch`] fetches from on a task of its own.
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

/// A producer that emits what a [`Source`] yields, as fast as demand allows, and
/// stops normally once the source is exhausted and its last events are dispatched.
///
/// Made by [`from_iter`]; a stream has its own producer, [`StreamProducer`]. It pulls
/// for the demand it has, and pulls again for what a pull did not fill after a turn
/// through its mailbox.
///
/// ```
/// use futures::StreamExt;
/// use gen_stage::source::{IterSource, OnCancel, SourceProducer};
/// use gen_stage::SubscribeOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// let letters = SourceProducer::new(IterSource::new('a'..='z')).on_cancel(OnCancel::Stop);
/// let letters = gen_stage::producer(letters).start().await?;
/// let events = gen_stage::stream::subscribe(&letters, SubscribeOptions::new())?;
/// assert_eq!(events.take(3).collect::<String>().await, "abc");
/// // Its only consumer left: the producer stops.
/// assert!(letters.stopped().await.is_normal());
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct SourceProducer<S> {
    source: S,
    exhausted: bool,
    consumers: Consumers,
    /// Demand not yet served.
    pending: usize,
    /// A [`SourceMessage`] to pull again is in the mailbox.
    pull_queued: bool,
}

impl<S> fmt::Debug for SourceProducer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceProducer")
            .field("exhausted", &self.exhausted)
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
            consumers: Consumers::default(),
            pending: 0,
            pull_queued: false,
        }
    }

    /// What to do when the last consumer cancels (default [`OnCancel::Continue`]).
    pub fn on_cancel(mut self, on_cancel: OnCancel) -> Self {
        self.consumers.on_cancel = on_cancel;
        self
    }
}

impl<S: Source> ProducerBuilder<SourceProducer<S>> {
    /// What the producer does when its last consumer cancels (default
    /// [`OnCancel::Continue`]), on the builder that [`from_iter`] returns:
    ///
    /// ```
    /// use futures::StreamExt;
    /// use gen_stage::source::OnCancel;
    /// use gen_stage::SubscribeOptions;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), gen_stage::BoxError> {
    /// let numbers = gen_stage::source::from_iter(0_u64..).on_cancel(OnCancel::Stop);
    /// let numbers = numbers.start().await?;
    /// let options = SubscribeOptions::new().max_demand(10);
    /// let stream = gen_stage::stream::subscribe(&numbers, options)?;
    /// assert_eq!(stream.take(3).collect::<Vec<_>>().await, [0, 1, 2]);
    /// // The stream let go of its subscription: the producer stopped.
    /// assert!(numbers.stopped().await.is_normal());
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_cancel(mut self, on_cancel: OnCancel) -> Self {
        self.stage_mut().consumers.on_cancel = on_cancel;
        self
    }
}

/// The messages a source producer sends itself: to pull again for demand a pull did
/// not fill, and, once exhausted, to stop after the last events have left the
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
        self.consumers.joined();
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        _tag: SubscriptionTag,
        _reason: &CancelReason,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.consumers.left(ctx);
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
/// let numbers = gen_stage::source::from_iter(1..=5).start().await?;
/// let stream = gen_stage::stream::subscribe(&numbers, SubscribeOptions::new().max_demand(2))?;
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
