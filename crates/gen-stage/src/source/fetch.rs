//! A producer over a source that waits for its items (a broker's long poll, a
//! database claim), fetched by a task of the producer's own, within a credit.

mod fetcher;
mod memory;

pub use memory::MemorySource;

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use self::fetcher::{Command, Fetcher, Reply, Task};
use super::{Consumers, OnCancel};
use crate::builder::{ProducerBuilder, producer};
use crate::context::ProducerContext;
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::options::SubscribeOptions;
use crate::stage::{Init, Producer};
use crate::subscription::SubscriptionTag;

/// Where a [`FetchProducer`] takes its events from: a source that waits for them, such
/// as a broker client (NATS JetStream's `fetch`, Redis's `XREADGROUP … COUNT n BLOCK
/// ms`, Postgres's `SELECT … FOR UPDATE SKIP LOCKED LIMIT n`).
///
/// The producer calls [`fetch`](Fetch::fetch) from a task of its own, one call at a
/// time, for no more items than its consumers asked for plus its
/// [`prefetch`](FetchProducer::prefetch); the stage keeps answering calls,
/// subscriptions and stops meanwhile. What the producer fetched and cannot emit (it
/// stops, or drains) goes back to the source through [`give_back`](Fetch::give_back):
/// nothing fetched is dropped. The source decides what an error means
/// ([`on_error`](Fetch::on_error)), and how long to wait after an empty fetch
/// ([`idle`](Fetch::idle)).
///
/// The core knows nothing of acknowledgements: once emitted, an item is the
/// consumers' (a connector that needs acks builds them into its items).
///
/// # Example
///
/// A source that long-polls a channel, as a broker client long-polls its server:
///
/// ```
/// use std::collections::VecDeque;
/// use std::convert::Infallible;
///
/// use futures::StreamExt;
/// use gen_stage::source::{Fetch, Fetched};
/// use gen_stage::{ExitReason, SubscribeOptions};
/// use tokio::sync::mpsc;
///
/// struct Lines {
///     receiver: mpsc::Receiver<String>,
///     /// Lines given back, served again first.
///     returned: VecDeque<String>,
/// }
///
/// impl Fetch for Lines {
///     type Item = String;
///     type Error = Infallible;
///
///     async fn fetch(&mut self, max: usize, into: &mut Vec<String>) -> Result<Fetched, Infallible> {
///         while into.len() < max {
///             match self.returned.pop_front() {
///                 Some(line) => into.push(line),
///                 None => break,
///             }
///         }
///         if into.is_empty() {
///             // The long poll: wait for the first line. `recv` is cancel safe, and the
///             // line goes into `into` at once, so a cancelled fetch loses nothing.
///             match self.receiver.recv().await {
///                 Some(line) => into.push(line),
///                 None => return Ok(Fetched::End),
///             }
///         }
///         // Then whatever else is ready, without waiting.
///         while into.len() < max {
///             match self.receiver.try_recv() {
///                 Ok(line) => into.push(line),
///                 Err(_) => break,
///             }
///         }
///         Ok(Fetched::More)
///     }
///
///     async fn give_back(&mut self, lines: Vec<String>) {
///         // A broker client would release them here (a NATS `Nak`, a lease reset).
///         for line in lines.into_iter().rev() {
///             self.returned.push_front(line);
///         }
///     }
///
///     // `fetch` waits on its own and never comes back empty: no wait after it.
///     async fn idle(&mut self, _empty: u32) {}
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// let (sender, receiver) = mpsc::channel(16);
/// let lines = Lines { receiver, returned: VecDeque::new() };
/// let producer = gen_stage::source::from_fetch(lines).start().await?;
/// let mut events = gen_stage::stream::subscribe(&producer, SubscribeOptions::new())?;
/// sender.send("hello".to_owned()).await?;
/// assert_eq!(events.next().await.as_deref(), Some("hello"));
/// // The fetch waits for the next line; the producer answers meanwhile, and stops.
/// assert_eq!(producer.estimate_buffered_count().await?, 0);
/// producer.stop(ExitReason::Shutdown).await?;
/// # Ok(())
/// # }
/// ```
pub trait Fetch: Send + 'static {
    /// The items, emitted as events.
    type Item: Send + 'static;
    /// What a fetch fails with; [`on_error`](Fetch::on_error) decides what it means.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Fetches up to `max` items (always at least 1) into `into`, pushing each as soon
    /// as it has it, and says whether the source has more to come.
    ///
    /// `into` is empty when the call starts. Return once you have items (fewer than
    /// `max` is fine: the producer fetches again at once for the rest of its credit),
    /// or empty-handed after a long poll found nothing (the producer then waits
    /// [`idle`](Fetch::idle) before it fetches again). [`Fetched::End`] says the source
    /// is exhausted: the items pushed by this call are its last, and the producer stops
    /// normally once they are dispatched. Items pushed beyond `max` are given back at
    /// once, never emitted.
    ///
    /// # Cancel safety
    ///
    /// The producer drops this future when it stops or drains, and hands every item in
    /// `into` back to [`give_back`](Fetch::give_back). So push each item into `into`
    /// as soon as it is received, and await only what loses nothing when dropped
    /// (tokio's `mpsc::Receiver::recv`, a socket read into a buffer kept in `self`):
    /// an item received and not yet pushed when the future is dropped is lost.
    ///
    /// # Errors
    ///
    /// An error goes to [`on_error`](Fetch::on_error), which retries or stops the
    /// stage. Items pushed before the error are kept: they are emitted (on a retry) or
    /// given back (on a stop).
    fn fetch(
        &mut self,
        max: usize,
        into: &mut Vec<Self::Item>,
    ) -> impl Future<Output = Result<Fetched, Self::Error>> + Send;

    /// Takes back items fetched and never emitted, in the order they were fetched:
    /// those the producer held beyond demand, those a cancelled fetch had pushed, and
    /// those that came back while it stopped or drained. A connector releases them
    /// (nacks them, resets their lease) so that they are delivered again; a queue puts
    /// them back at its front.
    ///
    /// Called from the producer's task while the stage stops (its `terminate` waits
    /// [`give_back_timeout`](FetchProducer::give_back_timeout) for it) or drains, and
    /// at once for items pushed beyond `max`; never with no items. A stage that is
    /// killed (its task aborted) gives nothing back: a broker's redelivery timeout
    /// covers that case.
    fn give_back(&mut self, items: Vec<Self::Item>) -> impl Future<Output = ()> + Send;

    /// Decides what a failed fetch means: retry after a delay, or stop the stage with
    /// [`ExitReason::Error`] carrying the error. `attempt` counts the failures in a
    /// row, from 1; a fetch that succeeds resets it.
    ///
    /// The default retries with [`OnFetchError::backoff`]: 100 ms, doubling, capped at
    /// 30 s. Each failure is logged with `tracing` (a warning with the attempt and the
    /// delay, or an error on a stop).
    fn on_error(&mut self, error: &Self::Error, attempt: u32) -> OnFetchError {
        let _ = error;
        OnFetchError::backoff(attempt)
    }

    /// Waits after a fetch that came back empty, before the next: `empty` counts the
    /// empty fetches in a row, from 1. A source whose `fetch` long-polls returns at once
    /// (`async {}`); a source that can tell when items come waits for that.
    ///
    /// The default sleeps 100 ms after the first empty fetch, doubling with each
    /// further one, up to 2 s. Never return at once from a `fetch` that does not
    /// wait: the producer would fetch in a busy loop.
    ///
    /// # Cancel safety
    ///
    /// The producer drops this future when it stops or drains.
    fn idle(&mut self, empty: u32) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(doubling(Duration::from_millis(100), empty, IDLE_CAP))
    }
}

/// The longest default wait after empty fetches.
const IDLE_CAP: Duration = Duration::from_secs(2);

/// The longest default delay before a retry.
const RETRY_CAP: Duration = Duration::from_secs(30);

/// `base` doubled for each step after the first, capped at `cap`.
fn doubling(base: Duration, step: u32, cap: Duration) -> Duration {
    let doublings = step.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(cap)
}

/// What a [`Fetch::fetch`] that succeeded says of the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fetched {
    /// More may come: the producer fetches again when it has credit.
    More,
    /// The source is exhausted: the items this fetch pushed are its last. The producer
    /// stops normally once they are dispatched.
    End,
}

/// What the producer does after a failed fetch: [`Fetch::on_error`]'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnFetchError {
    /// Fetch again after `after`. The stage keeps running and answering meanwhile.
    Retry {
        /// How long to wait before fetching again.
        after: Duration,
    },
    /// Stop the stage with [`ExitReason::Error`] carrying the error; what was fetched
    /// and not emitted is given back.
    Stop,
}

impl OnFetchError {
    /// Retry after an exponential, capped backoff: 100 ms for the first attempt,
    /// doubling with each attempt after it, up to 30 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use gen_stage::source::OnFetchError;
    ///
    /// assert_eq!(OnFetchError::backoff(1), OnFetchError::Retry { after: Duration::from_millis(100) });
    /// assert_eq!(OnFetchError::backoff(3), OnFetchError::Retry { after: Duration::from_millis(400) });
    /// assert_eq!(OnFetchError::backoff(20), OnFetchError::Retry { after: Duration::from_secs(30) });
    /// ```
    pub fn backoff(attempt: u32) -> Self {
        let after = doubling(Duration::from_millis(100), attempt, RETRY_CAP);
        OnFetchError::Retry { after }
    }
}

/// How long `terminate` waits for the source to take back what it gets back, unless
/// [`FetchProducer::give_back_timeout`] says otherwise.
const DEFAULT_GIVE_BACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A producer that emits what a [`Fetch`] source fetches, within the demand of its
/// consumers plus a prefetch, and stops normally once the source has ended and its
/// last events are dispatched.
///
/// Made by [`from_fetch`], or by [`FetchProducer::new`] to configure it.
///
/// # Credit
///
/// Items fetched and not yet emitted, plus the `max` of the fetch in progress, never
/// exceed the demand the producer has not served plus its
/// [`prefetch`](FetchProducer::prefetch) (0 by default). Items fetched beyond the
/// demand (the prefetch) are kept by the producer, not in the stage's buffer where a
/// full buffer would discard them, and are emitted as demand comes. The source is
/// fetched from again as soon as a fetch returns with credit left; with a prefetch,
/// the producer fetches from its start, before any consumer asks.
///
/// # The fetching task
///
/// `init` starts a task that calls the source, one fetch at a time; the stage never
/// waits for it, and the results come back to the stage in order. After a fetch that
/// came back empty the task waits [`Fetch::idle`]; after an error, what
/// [`Fetch::on_error`] says. A panic in the source stops the stage with
/// [`ExitReason::Panic`].
///
/// # Stopping and draining
///
/// When the stage stops (its source ended, it was stopped, it failed, or its last
/// consumer left with [`OnCancel::Stop`]), the fetch in progress is cancelled (its
/// future dropped), and what it had pushed, with the items kept beyond demand, goes
/// back to the source through [`Fetch::give_back`]; `terminate` waits for that within
/// [`give_back_timeout`](FetchProducer::give_back_timeout), then aborts the task.
/// When the stage drains ([`StageRef::drain_and_stop`](crate::StageRef::drain_and_stop)),
/// it fetches nothing more and emits nothing more it fetched: as soon as one of its
/// hooks runs (a fetch coming back, at the latest when it stops), the fetch in
/// progress is cancelled and everything not emitted is given back.
///
/// ```
/// use futures::StreamExt;
/// use gen_stage::source::{FetchProducer, MemorySource};
/// use gen_stage::{ExitReason, SubscribeOptions};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// let queue = MemorySource::new();
/// queue.extend(1..=10);
/// // Fetches 2 more than asked, kept for the next demand.
/// let producer = gen_stage::producer(FetchProducer::new(queue.clone()).prefetch(2)).start().await?;
/// // Asks for 3, and asks again only once the stream has pulled all 3 and is polled.
/// let options = SubscribeOptions::new().max_demand(3).min_demand(0);
/// let events = gen_stage::stream::subscribe(&producer, options)?;
/// assert_eq!(events.take(3).collect::<Vec<_>>().await, vec![1, 2, 3]);
/// producer.stop(ExitReason::Shutdown).await?;
/// // What it fetched and did not emit is back in the queue, in order.
/// assert_eq!(queue.drain(), (4..=10).collect::<Vec<_>>());
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct FetchProducer<S: Fetch> {
    /// The source, until `init` gives it to the task.
    source: Option<S>,
    fetcher: Option<Fetcher<S>>,
    /// The task, once told to give back and end.
    finishing: Option<Task>,
    /// Items fetched and not yet emitted, oldest first.
    kept: VecDeque<S::Item>,
    /// Demand not yet served.
    pending: usize,
    /// The `max` of the fetch in progress; 0 when none is.
    fetching: usize,
    prefetch: usize,
    /// The source has ended: nothing more is fetched.
    ended: bool,
    /// The info that stops the stage once its last events are out has been sent.
    end_sent: bool,
    consumers: Consumers,
    give_back_timeout: Duration,
}

impl<S: Fetch> fmt::Debug for FetchProducer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchProducer")
            .field("fetching", &self.fetching)
            .field("kept", &self.kept.len())
            .field("pending", &self.pending)
            .field("prefetch", &self.prefetch)
            .field("ended", &self.ended)
            .field("consumers", &self.consumers)
            .finish_non_exhaustive()
    }
}

impl<S: Fetch> FetchProducer<S> {
    /// A producer over `source`.
    pub fn new(source: S) -> Self {
        FetchProducer {
            source: Some(source),
            fetcher: None,
            finishing: None,
            kept: VecDeque::new(),
            pending: 0,
            fetching: 0,
            prefetch: 0,
            ended: false,
            end_sent: false,
            consumers: Consumers::default(),
            give_back_timeout: DEFAULT_GIVE_BACK_TIMEOUT,
        }
    }

    /// How many items the producer may fetch beyond the demand it has (default 0), to
    /// serve the next demand without waiting for a fetch. They are kept by the producer
    /// and given back if it stops or drains before emitting them.
    pub fn prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// What to do when the last consumer cancels (default [`OnCancel::Continue`]).
    pub fn on_cancel(mut self, on_cancel: OnCancel) -> Self {
        self.consumers.on_cancel = on_cancel;
        self
    }

    /// How long `terminate` waits for [`Fetch::give_back`] (default 5 s); past it the
    /// task is aborted, and the items not yet taken back are dropped (and logged).
    /// Keep it below the stage's shutdown limit.
    pub fn give_back_timeout(mut self, timeout: Duration) -> Self {
        self.give_back_timeout = timeout;
        self
    }

    /// Emits what is kept for the demand, then fetches for the credit left.
    fn advance(&mut self, ctx: &mut ProducerContext<'_, Self>) {
        if ctx.is_draining() {
            self.finish();
            return;
        }
        let serve = self.kept.len().min(self.pending);
        if serve > 0 {
            self.pending -= serve;
            ctx.emit(self.kept.drain(..serve).collect());
        }
        if self.ended {
            if self.kept.is_empty() && !self.end_sent {
                // An info: the stage stops once the events it buffers are out.
                self.end_sent = true;
                let _ = ctx.stage_ref().async_info(FetchMessage(Step::Ended));
            }
            return;
        }
        let credit = self
            .pending
            .saturating_add(self.prefetch)
            .saturating_sub(self.kept.len());
        if self.fetching == 0 && credit > 0 {
            if let Some(fetcher) = &self.fetcher {
                if fetcher.commands.send(Command::Fetch(credit)).is_ok() {
                    self.fetching = credit;
                }
            }
        }
    }

    /// Takes what the task sent back.
    fn take_replies(&mut self, ctx: &mut ProducerContext<'_, Self>) -> Result<(), BoxError> {
        let Some(fetcher) = &mut self.fetcher else {
            return Ok(());
        };
        while let Ok(reply) = fetcher.replies.try_recv() {
            self.fetching = 0;
            match reply {
                Reply::Fetched { items, ended } => {
                    self.kept.extend(items);
                    self.ended |= ended;
                }
                Reply::Failed(error) => return Err(Box::new(error)),
                Reply::Panicked(reason) => ctx.stop(reason),
            }
        }
        Ok(())
    }

    /// Tells the task to cancel its fetch, give back what is not emitted, and end.
    fn finish(&mut self) {
        self.ended = true;
        self.fetching = 0;
        let Some(Fetcher {
            commands,
            replies,
            task,
        }) = self.fetcher.take()
        else {
            return;
        };
        let kept = self.kept.drain(..).collect();
        if let Err(mpsc::error::SendError(Command::Finish { kept, .. })) =
            commands.send(Command::Finish { kept, replies })
        {
            tracing::error!(
                dropped = kept.len(),
                "the fetching task is gone: fetched items cannot be given back"
            );
        }
        self.finishing = Some(task);
    }
}

/// The messages a [`FetchProducer`] receives: its task's word that a fetch came back,
/// and the info that stops it once its source has ended and its last events are out.
/// Only the producer makes them.
pub struct FetchMessage(Step);

#[derive(Debug)]
enum Step {
    Ready,
    Ended,
}

impl fmt::Debug for FetchMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: Fetch> Producer for FetchProducer<S> {
    type Event = S::Item;
    type Message = FetchMessage;

    async fn init(&mut self, ctx: &mut ProducerContext<'_, Self>) -> Result<Init, BoxError> {
        if let Some(source) = self.source.take() {
            let stage = ctx.stage_ref().uncounted();
            self.fetcher = Some(fetcher::spawn(source, move || {
                // A stage that has stopped finds the items in the replies it hands
                // the task to give back.
                let _ = stage.cast(FetchMessage(Step::Ready));
            }));
        }
        // With a prefetch, fetching starts now.
        self.advance(ctx);
        Ok(Init::Start)
    }

    async fn handle_demand(
        &mut self,
        demand: usize,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<S::Item>, BoxError> {
        self.pending = self.pending.saturating_add(demand);
        self.advance(ctx);
        Ok(Vec::new())
    }

    async fn handle_consumer_subscribed(
        &mut self,
        _tag: SubscriptionTag,
        _options: &SubscribeOptions,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.consumers.joined();
        if ctx.is_draining() {
            self.finish();
        }
        Ok(())
    }

    /// A drain stops the fetching at once: the fetch in progress is cancelled, and
    /// what was fetched and not emitted goes back to the source.
    async fn prepare_for_draining(
        &mut self,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.finish();
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        _tag: SubscriptionTag,
        _reason: &CancelReason,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.consumers.left(ctx);
        if ctx.is_draining() {
            self.finish();
        }
        Ok(())
    }

    async fn handle_message(
        &mut self,
        message: FetchMessage,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message.0 {
            Step::Ready => {
                self.take_replies(ctx)?;
                if !ctx.is_stopping() {
                    self.advance(ctx);
                }
            }
            Step::Ended => ctx.stop(ExitReason::Normal),
        }
        Ok(())
    }

    async fn terminate(&mut self, _reason: &ExitReason) {
        self.finish();
        let Some(task) = self.finishing.take() else {
            return;
        };
        match tokio::time::timeout(self.give_back_timeout, task.join()).await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => tracing::error!(%reason, "the fetching task failed"),
            Err(_) => tracing::warn!(
                timeout = ?self.give_back_timeout,
                "the source did not take back its items in time: the fetching task is aborted"
            ),
        }
    }
}

/// A producer of what `source` fetches; it stops normally once the source has ended
/// and its last events are dispatched. A task of its own fetches (see
/// [`FetchProducer`]): while a fetch waits, the producer still answers, and stops when
/// asked, giving back what it fetched and did not emit.
///
/// ```
/// use futures::StreamExt;
/// use gen_stage::source::MemorySource;
/// use gen_stage::SubscribeOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// let queue = MemorySource::new();
/// let producer = gen_stage::source::from_fetch(queue.clone()).start().await?;
/// let mut events = gen_stage::stream::subscribe(&producer, SubscribeOptions::new())?;
/// queue.push("job 1");
/// assert_eq!(events.next().await, Some("job 1"));
/// queue.push("job 2");
/// // Closed: the producer stops once the queue is empty.
/// queue.close();
/// assert_eq!(events.collect::<Vec<_>>().await, vec!["job 2"]);
/// assert!(producer.stopped().await.is_normal());
/// # Ok(())
/// # }
/// ```
pub fn from_fetch<S: Fetch>(source: S) -> ProducerBuilder<FetchProducer<S>> {
    producer(FetchProducer::new(source))
}
