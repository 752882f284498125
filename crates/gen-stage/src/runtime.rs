//! The tasks that run stages: one loop per kind of stage, sharing the two halves
//! (producer side, consumer side) and the driver below.

mod consumer;
mod consumer_side;
mod producer;
mod producer_consumer;
mod producer_side;
mod shared;

pub(crate) use consumer::{InitialSubscription, Target};

pub(crate) use consumer::ConsumerRuntime;
pub(crate) use consumer_side::ConsumerSide;
pub(crate) use producer::ProducerRuntime;
pub(crate) use producer_consumer::ProducerConsumerRuntime;
pub(crate) use producer_side::ProducerSide;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot, watch};

use crate::context::Control;
use crate::error::{CallError, StartError, SubscribeError};
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::handle::{DEFAULT_CALL_TIMEOUT, StageRef, wait_reply};
use crate::kind::StageKind;
use crate::protocol::{Envelope, SubscribeReply, SubscribeRequest};
use crate::registry::{PortEntryMaker, Registry};
use crate::stage::Init;
use crate::stats::{StageState, StatsCell};
use crate::subscription::SubscriptionTag;

/// Runs a hook, turning a panic into [`ExitReason::Panic`].
pub(crate) async fn catch<T>(hook: impl Future<Output = T>) -> Result<T, ExitReason> {
    AssertUnwindSafe(hook)
        .catch_unwind()
        .await
        .map_err(|payload| ExitReason::from_panic(&*payload))
}

/// Runs a hook whose error, like its panic, stops the stage.
pub(crate) async fn guarded<T>(
    hook: impl Future<Output = Result<T, BoxError>>,
) -> Result<T, ExitReason> {
    catch(hook).await?.map_err(ExitReason::error)
}

/// Maps what `init` returned to the start outcome.
pub(crate) fn init_outcome(result: Result<Init, ExitReason>) -> Result<(), StartError> {
    match result {
        Ok(Init::Start) => Ok(()),
        Ok(Init::Ignore) => Err(StartError::Ignored),
        Err(reason) => Err(StartError::Init(reason)),
    }
}

/// Waits for the answer to an initial subscription.
pub(crate) async fn await_subscription(
    receiver: oneshot::Receiver<Result<SubscriptionTag, SubscribeError>>,
) -> Result<SubscriptionTag, SubscribeError> {
    match wait_reply(receiver, DEFAULT_CALL_TIMEOUT).await {
        Ok(result) => result,
        Err(CallError::NotAlive) => Err(SubscribeError::ProducerNotAlive),
        Err(CallError::Timeout) => Err(SubscribeError::Timeout),
    }
}

/// Answers a sync subscriber, if there is one.
pub(crate) fn answer(
    reply: Option<SubscribeReply>,
    result: Result<SubscriptionTag, SubscribeError>,
) {
    if let Some(reply) = reply {
        let _ = reply.send(result);
    }
}

/// One kind of stage's loop body.
pub(crate) trait Runner: Send + 'static {
    type Kind: StageKind;

    /// `init`, then the initial subscriptions.
    fn start(&mut self) -> impl Future<Output = Result<(), StartError>> + Send;

    /// Handles one message, and whatever it made ready.
    fn handle(&mut self, envelope: Envelope<Self::Kind>) -> impl Future<Output = ()> + Send;

    /// The stage's own handle and stop request.
    fn control_ref(&self) -> &Control<Self::Kind>;

    /// The reason to stop, once a hook or a message asked for it.
    fn stop_reason(&self) -> Option<ExitReason> {
        self.control_ref().stop.clone()
    }

    /// Runs the `terminate` hook.
    fn terminate(&mut self, reason: &ExitReason) -> impl Future<Output = ()> + Send;

    /// The stage's counters.
    fn stats(&self) -> &Arc<StatsCell> {
        self.control_ref().me.stats_cell()
    }

    /// The stage's identity.
    fn stage_id(&self) -> crate::StageId {
        self.control_ref().me.id()
    }

    /// Records the reason peers will be told when the runner is dropped.
    fn set_exit_reason(&mut self, reason: &ExitReason);
}

/// Spawns a stage and waits until it has started.
pub(crate) async fn start<R: Runner>(
    stats: Arc<StatsCell>,
    naming: Option<Naming<R::Kind>>,
    make: impl FnOnce(StageRef<R::Kind>) -> R,
) -> Result<StageRef<R::Kind>, StartError> {
    let (sender, mailbox) = mpsc::unbounded_channel();
    let (exit_sender, exit) = watch::channel(None);
    let me = StageRef::new(sender, exit, stats);
    let registered = match naming {
        Some(naming) => {
            let port = naming.port.map(|make_port| make_port(&me));
            naming
                .registry
                .register(&naming.name, &me, port)
                .map_err(StartError::NameTaken)?;
            Some((naming.registry, naming.name))
        }
        None => None,
    };
    let runner = make(me.clone());
    let (started_sender, started) = oneshot::channel();
    let span =
        tracing::debug_span!("stage", id = %me.id(), kind = std::any::type_name::<R::Kind>());
    let driven = drive(runner, mailbox, started_sender, exit_sender, registered);
    let task = tokio::spawn(tracing::Instrument::instrument(driven, span));
    me.set_abort(task.abort_handle());
    // A start its caller gave up on (it dropped this future while `init` ran) must not
    // leave a stage running that nobody holds: it is killed.
    let abandoned = AbortOnDrop::new(task.abort_handle());
    let outcome = match started.await {
        Ok(Ok(())) => Ok(me),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(StartError::Init(ExitReason::Killed)),
    };
    abandoned.disarm();
    outcome
}

/// Aborts a task when dropped, unless disarmed.
pub(crate) struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl AbortOnDrop {
    pub(crate) fn new(task: tokio::task::AbortHandle) -> Self {
        AbortOnDrop(Some(task))
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The name a stage is registered under, given to its builder.
pub(crate) struct Naming<K: StageKind> {
    pub(crate) registry: Registry,
    pub(crate) name: String,
    /// For stages that emit: how to make the registry entry that subscribes by name.
    pub(crate) port: Option<PortEntryMaker<K>>,
}

async fn drive<R: Runner>(
    mut runner: R,
    mailbox: mpsc::UnboundedReceiver<Envelope<R::Kind>>,
    started: oneshot::Sender<Result<(), StartError>>,
    exit: watch::Sender<Option<ExitReason>>,
    registered: Option<(Registry, String)>,
) {
    let mut mailbox = Mailbox {
        receiver: mailbox,
        reason: ExitReason::Killed,
    };
    let unregister = |id| {
        if let Some((registry, name)) = &registered {
            registry.unregister(name, id);
        }
    };
    if let Err(error) = runner.start().await {
        let reason = match &error {
            StartError::Ignored => ExitReason::Normal,
            StartError::Init(reason) => reason.clone(),
            StartError::InvalidOptions(_) | StartError::Subscribe(_) | StartError::NameTaken(_) => {
                ExitReason::Shutdown
            }
        };
        unregister(runner.stage_id());
        finish(runner, mailbox, &exit, reason);
        let _ = started.send(Err(error));
        return;
    }
    let stats = runner.stats().clone();
    stats.set_state(StageState::Running);
    tracing::debug!("stage started");
    let _ = started.send(Ok(()));
    // Most hooks catch their own panics; this catches the panics of the hot hooks
    // (`handle_events`, `handle_demand`: a catch per call moves the hook's future, which
    // cost 4-8 % of throughput) and of the user's code that runs outside hooks (a
    // dispatcher, a selector, a partition's hash), so that they too stop the stage with
    // the panic as its reason, through `terminate`. It wraps the whole loop, not each
    // message: a wrapper per message would move the handler's future.
    let running = catch(async {
        loop {
            if let Some(reason) = runner.stop_reason() {
                break reason;
            }
            match mailbox.receiver.recv().await {
                Some(envelope) => runner.handle(envelope).await,
                None => break ExitReason::Killed,
            }
        }
    });
    let reason = running.await.unwrap_or_else(|panic| panic);
    if reason.is_graceful() {
        tracing::debug!(%reason, "stage stopping");
    } else {
        tracing::warn!(%reason, "stage stopping");
    }
    stats.set_state(StageState::Stopping);
    runner.terminate(&reason).await;
    unregister(runner.stage_id());
    finish(runner, mailbox, &exit, reason);
}

/// Tells the peers, closes the mailbox (pending calls fail), publishes the reason.
fn finish<R: Runner>(
    mut runner: R,
    mut mailbox: Mailbox<R::Kind>,
    exit: &watch::Sender<Option<ExitReason>>,
    reason: ExitReason,
) {
    // The stop is published before the peers are told, so that whoever watches this
    // stage (a supervisor) learns of it before it learns of what it causes downstream.
    let stats = runner.stats().clone();
    stats.set_state(StageState::Stopped);
    mailbox.receiver.close();
    exit.send_replace(Some(reason.clone()));
    runner.set_exit_reason(&reason);
    drop(runner);
    mailbox.reason = reason;
}

/// A stage's mailbox, as its task holds it. When it goes (the stage stopped, or its
/// task was killed), subscriptions still queued in it are refused, so that no
/// subscriber waits on a stage that will never answer; other messages are dropped
/// (calls then fail).
struct Mailbox<K: StageKind> {
    receiver: mpsc::UnboundedReceiver<Envelope<K>>,
    /// Why the stage stopped, told to the subscriptions refused.
    reason: ExitReason,
}

impl<K: StageKind> Drop for Mailbox<K> {
    fn drop(&mut self) {
        self.receiver.close();
        while let Ok(envelope) = self.receiver.try_recv() {
            if let Envelope::Subscribe(request) = envelope {
                let SubscribeRequest {
                    tag, sink, reply, ..
                } = *request;
                if reply.is_some() {
                    // The subscriber learns it from the answer: the consumer stays up.
                    let refusal = SubscribeError::ProducerNotAlive;
                    sink.send_cancel(tag, CancelReason::Rejected(Arc::new(refusal.clone())));
                    answer(reply, Err(refusal));
                } else {
                    sink.send_cancel(tag, CancelReason::Down(self.reason.clone()));
                }
            }
        }
    }
}
