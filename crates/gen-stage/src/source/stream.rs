//! A producer over a stream, which a task of its own (the feeder) polls, so that the
//! stage never waits for the stream and keeps answering meanwhile.

use std::fmt;
use std::pin::{Pin, pin};

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::mpsc;

use super::{Consumers, OnCancel};
use crate::builder::{ProducerBuilder, producer};
use crate::context::ProducerContext;
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::handle::ProducerRef;
use crate::options::SubscribeOptions;
use crate::runtime::{AbortOnDrop, catch};
use crate::stage::{Init, Producer};
use crate::subscription::SubscriptionTag;

/// A producer that emits the items of a stream as demand allows, and stops normally
/// once the stream has ended and its last events are dispatched.
///
/// Made by [`from_stream`], or by [`StreamProducer::new`] to choose what it does when
/// its last consumer leaves ([`OnCancel`]). A task of its own polls the stream, started
/// by `init` and ended when the stage stops: the stage itself never waits for the
/// stream, so while the stream has nothing ready it still answers calls, accepts and
/// cancels subscriptions, and stops when asked. The task waits for the stream's next
/// item, takes with it whatever else is ready, up to the demand, and hands the stage
/// the batch: ready items go out without waiting for the whole demand.
///
/// The task pins the stream, which therefore need not be `Unpin`, and drops it when the
/// stage stops (or is killed). A panic while polling the stream stops the stage with
/// [`ExitReason::Panic`].
///
/// ```
/// use futures::StreamExt;
/// use gen_stage::source::{OnCancel, StreamProducer};
/// use gen_stage::SubscribeOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// // A stream without end: the producer stops once its only consumer leaves.
/// let counting = StreamProducer::new(futures::stream::iter(0u64..)).on_cancel(OnCancel::Stop);
/// let counting = gen_stage::producer(counting).start().await?;
/// let events = gen_stage::stream::subscribe(&counting, SubscribeOptions::new().max_demand(10))?;
/// assert_eq!(events.take(3).collect::<Vec<_>>().await, vec![0, 1, 2]);
/// assert!(counting.stopped().await.is_normal());
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct StreamProducer<St> {
    /// The stream, until `init` gives it to the feeder.
    stream: Option<St>,
    feeder: Option<Feeder>,
    consumers: Consumers,
}

/// The stage's end of its feeder: the demand goes out through `credit`, and the task is
/// aborted when this is dropped (the stage stopped, or was killed).
struct Feeder {
    credit: mpsc::UnboundedSender<usize>,
    _task: AbortOnDrop,
}

impl<St> fmt::Debug for StreamProducer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamProducer")
            .field("feeding", &self.feeder.is_some())
            .field("consumers", &self.consumers)
            .finish_non_exhaustive()
    }
}

impl<St> StreamProducer<St>
where
    St: Stream + Send + 'static,
    St::Item: Send + 'static,
{
    /// A producer over `stream`.
    pub fn new(stream: St) -> Self {
        StreamProducer {
            stream: Some(stream),
            feeder: None,
            consumers: Consumers::default(),
        }
    }

    /// What to do when the last consumer cancels (default [`OnCancel::Continue`]).
    pub fn on_cancel(mut self, on_cancel: OnCancel) -> Self {
        self.consumers.on_cancel = on_cancel;
        self
    }
}

impl<St> ProducerBuilder<StreamProducer<St>>
where
    St: Stream + Send + 'static,
    St::Item: Send + 'static,
{
    /// What the producer does when its last consumer cancels (default
    /// [`OnCancel::Continue`]), on the builder that [`from_stream`] returns.
    pub fn on_cancel(mut self, on_cancel: OnCancel) -> Self {
        self.stage_mut().consumers.on_cancel = on_cancel;
        self
    }
}

/// The messages a [`StreamProducer`]'s feeder sends its stage: a batch of the stream's
/// items, the stream's panic, and, once the stream has ended, the info that stops the
/// stage after the last events have left the buffer. Only the feeder makes them.
pub struct StreamMessage<T>(Fed<T>);

enum Fed<T> {
    Items(Vec<T>),
    Panicked(ExitReason),
    Ended,
}

impl<T> fmt::Debug for StreamMessage<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Fed::Items(items) => f.debug_struct("Items").field("len", &items.len()).finish(),
            Fed::Panicked(reason) => f.debug_tuple("Panicked").field(reason).finish(),
            Fed::Ended => f.write_str("Ended"),
        }
    }
}

impl<St> Producer for StreamProducer<St>
where
    St: Stream + Send + 'static,
    St::Item: Send + 'static,
{
    type Event = St::Item;
    type Message = StreamMessage<St::Item>;

    async fn init(&mut self, ctx: &mut ProducerContext<'_, Self>) -> Result<Init, BoxError> {
        if let Some(stream) = self.stream.take() {
            let (credit, owed) = mpsc::unbounded_channel();
            let task = tokio::spawn(feed(stream, owed, ctx.stage_ref().uncounted()));
            self.feeder = Some(Feeder {
                credit,
                _task: AbortOnDrop::new(task.abort_handle()),
            });
        }
        Ok(Init::Start)
    }

    async fn handle_demand(
        &mut self,
        demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<St::Item>, BoxError> {
        if let Some(feeder) = &self.feeder {
            // The feeder is gone only once the stream has ended or panicked: the stage
            // is stopping, and the demand goes unserved.
            let _ = feeder.credit.send(demand);
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
        message: StreamMessage<St::Item>,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message.0 {
            Fed::Items(items) => ctx.emit(items),
            Fed::Panicked(reason) => ctx.stop(reason),
            Fed::Ended => ctx.stop(ExitReason::Normal),
        }
        Ok(())
    }

    async fn terminate(&mut self, _reason: &ExitReason) {
        // Nothing polls the stream once the stage stops.
        self.feeder = None;
    }
}

/// The feeder's task: feeds the stage from `stream` for the credit it sends, then tells
/// it how the stream ended. It ends when the stage stops (the credit channel closes or
/// the stage's mailbox does), and is aborted if the stage is dropped first.
async fn feed<St>(
    stream: St,
    mut credit: mpsc::UnboundedReceiver<usize>,
    stage: ProducerRef<StreamProducer<St>>,
) where
    St: Stream + Send + 'static,
    St::Item: Send + 'static,
{
    let mut stream = pin!(stream);
    // A message that cannot be sent finds the stage gone: there is no one left to tell.
    match catch(pump(stream.as_mut(), &mut credit, &stage)).await {
        Ok(Pumped::StageGone) => {}
        // An info, not a cast: the stage stops once the events it buffers are out.
        Ok(Pumped::StreamEnded) => {
            let _ = stage.async_info(StreamMessage(Fed::Ended));
        }
        // A cast: the panic stops the stage at once, as a panic in a hook does.
        Err(panic) => {
            let _ = stage.cast(StreamMessage(Fed::Panicked(panic)));
        }
    }
}

/// How [`pump`] returned.
enum Pumped {
    StreamEnded,
    StageGone,
}

/// Waits for credit, then for the stream's next item, and sends the stage that item
/// with whatever else is ready, up to the credit, as one batch; again, until the stream
/// ends or the stage is gone.
async fn pump<St>(
    mut stream: Pin<&mut St>,
    credit: &mut mpsc::UnboundedReceiver<usize>,
    stage: &ProducerRef<StreamProducer<St>>,
) -> Pumped
where
    St: Stream + Send + 'static,
    St::Item: Send + 'static,
{
    let mut owed = 0usize;
    loop {
        let first = tokio::select! {
            biased;
            more = credit.recv() => match more {
                Some(more) => {
                    owed = owed.saturating_add(more);
                    continue;
                }
                None => return Pumped::StageGone,
            },
            item = stream.next(), if owed > 0 => item,
        };
        let Some(first) = first else {
            return Pumped::StreamEnded;
        };
        let mut batch = vec![first];
        let mut ended = false;
        while batch.len() < owed {
            match stream.next().now_or_never() {
                Some(Some(item)) => batch.push(item),
                Some(None) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        owed -= batch.len();
        if stage.cast(StreamMessage(Fed::Items(batch))).is_err() {
            return Pumped::StageGone;
        }
        if ended {
            return Pumped::StreamEnded;
        }
    }
}

/// A producer of the items of `stream`; it stops normally once they are all
/// dispatched. A task of its own polls the stream (see [`StreamProducer`]): while the
/// stream has nothing ready, the producer still answers, and stops when asked.
///
/// ```
/// use futures::StreamExt;
/// use gen_stage::SubscribeOptions;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), gen_stage::BoxError> {
/// // Items come as they are sent; the stream ends when the sender is dropped.
/// let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
/// let lines = futures::stream::unfold(receiver, |mut receiver| async move {
///     receiver.recv().await.map(|line| (line, receiver))
/// });
/// let producer = gen_stage::source::from_stream(lines).start().await?;
/// let mut events = gen_stage::stream::subscribe(&producer, SubscribeOptions::new())?;
/// sender.send("hello")?;
/// assert_eq!(events.next().await, Some("hello"));
/// // The stream has nothing ready: the producer waits for it, and answers meanwhile.
/// assert_eq!(producer.estimate_buffered_count().await?, 0);
/// drop(sender);
/// assert_eq!(events.next().await, None);
/// assert!(producer.stopped().await.is_normal());
/// # Ok(())
/// # }
/// ```
pub fn from_stream<St>(stream: St) -> ProducerBuilder<StreamProducer<St>>
where
    St: Stream + Send + 'static,
    St::Item: Send + 'static,
{
    producer(StreamProducer::new(stream))
}
