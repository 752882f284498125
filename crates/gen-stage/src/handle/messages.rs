//! Messages to a stage's hooks: casts, calls and infos, within the stage's entry bound.

use std::time::Duration;
use tokio::sync::oneshot;

use super::{DEFAULT_CALL_TIMEOUT, StageRef};
use crate::error::{CallError, SendError, SyncInfoError, TryCastError};
use crate::kind::StageKind;
use crate::reply::ReplyTo;
use crate::wire::{Envelope, ForStage};

impl<K: StageKind> StageRef<K> {
    /// Sends a message to the stage's `handle_message` without waiting, whatever the
    /// number of messages already queued: **unbounded**. A loop of casts at a stage
    /// slower than the loop grows its mailbox without end; where the sender can wait,
    /// use [`StageRef::cast_when_room`], and where it cannot, [`StageRef::try_cast`].
    ///
    /// # Errors
    ///
    /// The message is given back if the stage is not alive.
    pub fn cast(&self, message: K::Message) -> Result<(), SendError<K::Message>> {
        self.life.entry.reserve_unbounded();
        self.send_message(message).map_err(SendError)
    }

    /// Sends a message to the stage's `handle_message` if its mailbox has room: fewer
    /// user messages (casts, calls, infos) queued than the capacity set on its
    /// builder ([`DEFAULT_MESSAGE_CAPACITY`](crate::builder::DEFAULT_MESSAGE_CAPACITY) by
    /// default). Never waits.
    ///
    /// ```
    /// # use gen_stage::error::TryCastError;
    /// # use gen_stage::{BoxError, Consumer, ConsumerContext, SubscriptionTag};
    /// struct Log;
    ///
    /// impl Consumer for Log {
    ///     type Event = ();
    ///     type Message = String;
    /// #   async fn handle_events(&mut self, _: Vec<()>, _: SubscriptionTag, _: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> { Ok(()) }
    ///     async fn handle_message(&mut self, line: String, _ctx: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> {
    ///         println!("{line}");
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), BoxError> {
    /// let log = gen_stage::consumer(Log).message_capacity(2).start().await?;
    /// // Nothing runs the stage between these lines (one thread, no await): the
    /// // third line finds the mailbox full and comes back.
    /// log.try_cast("one".to_owned())?;
    /// log.try_cast("two".to_owned())?;
    /// match log.try_cast("three".to_owned()) {
    ///     Err(TryCastError::Full(line)) => assert_eq!(line, "three"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The message is given back: [`TryCastError::Full`] if the mailbox has no room,
    /// [`TryCastError::NotAlive`] if the stage is not alive.
    pub fn try_cast(&self, message: K::Message) -> Result<(), TryCastError<K::Message>> {
        if !self.life.entry.try_reserve() {
            return Err(if self.is_alive() {
                TryCastError::Full(message)
            } else {
                TryCastError::NotAlive(message)
            });
        }
        self.send_message(message).map_err(TryCastError::NotAlive)
    }

    /// Sends a message to the stage's `handle_message` once its mailbox has room (see
    /// [`StageRef::try_cast`]): a fast sender is paced by the stage.
    ///
    /// # Errors
    ///
    /// The message is given back if the stage is not alive, or stops while the
    /// sender waits.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes drops the message unsent (if it was
    /// waiting for room) or leaves it sent.
    pub async fn cast_when_room(&self, message: K::Message) -> Result<(), SendError<K::Message>> {
        tokio::select! {
            () = self.life.entry.reserve() => {}
            () = self.mailbox.closed() => return Err(SendError(message)),
        }
        self.send_message(message).map_err(SendError)
    }

    /// Sends a user message whose place in the bound is taken; gives it back (and the
    /// place) if the stage is not alive.
    fn send_message(&self, message: K::Message) -> Result<(), K::Message> {
        self.send_message_of(message, |message| message)
    }

    /// Casts the message `build` makes of `payload`; gives `payload` back if the stage
    /// is not alive.
    pub(crate) fn cast_of<P>(
        &self,
        payload: P,
        build: impl FnOnce(P) -> K::Message,
    ) -> Result<(), P> {
        self.life.entry.reserve_unbounded();
        self.send_message_of(payload, build)
    }

    /// Sends the message `build` makes of `payload`, its place in the bound taken;
    /// gives `payload` back (and the place) if the stage is not alive.
    fn send_message_of<P>(&self, payload: P, build: impl FnOnce(P) -> K::Message) -> Result<(), P> {
        self.post(payload, |payload| {
            Envelope::Stage(ForStage::Message(build(payload)))
        })
        .inspect_err(|_| self.life.entry.release())
    }

    /// Sends a request built around a [`ReplyTo`] and waits up to
    /// [`DEFAULT_CALL_TIMEOUT`] for the reply.
    ///
    /// The message type usually has a variant holding the reply handle, so the variant's
    /// constructor is the argument:
    ///
    /// ```
    /// # use gen_stage::{BoxError, Producer, ProducerContext, ReplyTo};
    /// enum Request {
    ///     Count(ReplyTo<u64>),
    /// }
    /// # struct Counter(u64);
    /// # impl Producer for Counter {
    /// #     type Event = u64;
    /// #     type Message = Request;
    /// #     async fn handle_demand(&mut self, _: usize, _: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> { Ok(vec![]) }
    /// #     async fn handle_message(&mut self, message: Request, _: &mut ProducerContext<'_, Self>) -> Result<(), BoxError> {
    /// #         match message { Request::Count(reply) => reply.send(self.0) }
    /// #         Ok(())
    /// #     }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let counter = gen_stage::producer(Counter(7)).start().await.unwrap();
    /// let count = counter.call(Request::Count).await.unwrap();
    /// assert_eq!(count, 7);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`] if no reply came in time; [`CallError::NotAlive`] if the
    /// stage is not alive or dropped the reply handle without replying.
    ///
    /// # Cancel safety
    ///
    /// The request is sent at once: dropping the future only stops the wait. The
    /// stage still handles the request, and its reply goes nowhere.
    pub async fn call<R: Send + 'static>(
        &self,
        request: impl FnOnce(ReplyTo<R>) -> K::Message,
    ) -> Result<R, CallError> {
        self.call_timeout(request, DEFAULT_CALL_TIMEOUT).await
    }

    /// [`StageRef::call`] with a given timeout.
    ///
    /// # Errors
    ///
    /// As for [`StageRef::call`].
    pub async fn call_timeout<R: Send + 'static>(
        &self,
        request: impl FnOnce(ReplyTo<R>) -> K::Message,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        // A call is a user message: it waits for room in the mailbox, within its
        // timeout.
        tokio::select! {
            biased;
            () = self.mailbox.closed() => return Err(CallError::NotAlive),
            reserved = tokio::time::timeout_at(deadline, self.life.entry.reserve()) => {
                reserved.map_err(|_| CallError::Timeout)?;
            }
        }
        let (reply, receiver) = ReplyTo::for_stage(self.life.clone());
        self.send_message(request(reply))
            .map_err(|_| CallError::NotAlive)?;
        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(self.gone_error()),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Why a call got no reply from a stage that dropped it: the reason the stage
    /// stops, if it does.
    fn gone_error(&self) -> CallError {
        match self.life.stopping() {
            Some(reason) => CallError::Stopped(reason.clone()),
            None => CallError::NotAlive,
        }
    }

    /// Sends a message that reaches `handle_message` only after every event the stage
    /// had buffered before it has been dispatched; returns once it is queued.
    ///
    /// On a consumer, or a producer with nothing buffered, it is handled right away.
    ///
    /// # Errors
    ///
    /// [`SyncInfoError::NotAlive`], with the message, if the stage is not alive;
    /// [`SyncInfoError::Timeout`] if it did not take the message in within
    /// [`DEFAULT_CALL_TIMEOUT`] (it is busy in a hook; it still has the message).
    ///
    /// # Cancel safety
    ///
    /// The message is sent at once: dropping the future only stops the wait.
    pub async fn sync_info(&self, message: K::Message) -> Result<(), SyncInfoError<K::Message>> {
        let deadline = tokio::time::Instant::now() + DEFAULT_CALL_TIMEOUT;
        // A user message: it waits for room in the mailbox, within the timeout.
        tokio::select! {
            biased;
            () = self.mailbox.closed() => return Err(SyncInfoError::NotAlive(message)),
            reserved = tokio::time::timeout_at(deadline, self.life.entry.reserve()) => {
                if reserved.is_err() {
                    return Err(SyncInfoError::Timeout);
                }
            }
        }
        let (queued, receiver) = oneshot::channel();
        self.send_info(message, Some(queued))
            .map_err(SyncInfoError::NotAlive)?;
        // The stage acknowledges as soon as the info is queued; if it stops first the
        // message still reached it.
        match tokio::time::timeout_at(deadline, receiver).await {
            Ok(_) => Ok(()),
            Err(_) => Err(SyncInfoError::Timeout),
        }
    }

    /// Like [`StageRef::sync_info`], without waiting.
    ///
    /// # Errors
    ///
    /// The message is given back if the stage is not alive.
    pub fn async_info(&self, message: K::Message) -> Result<(), SendError<K::Message>> {
        self.life.entry.reserve_unbounded();
        self.send_info(message, None).map_err(SendError)
    }

    /// Sends an info whose place in the bound is taken; gives it back (and the place)
    /// if the stage is not alive.
    fn send_info(
        &self,
        message: K::Message,
        queued: Option<oneshot::Sender<()>>,
    ) -> Result<(), K::Message> {
        self.post(message, |message| {
            Envelope::Stage(ForStage::Info { message, queued })
        })
        .inspect_err(|_| self.life.entry.release())
    }
}
