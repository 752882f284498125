//! The tasks that run stages: one loop per kind of stage, sharing the two halves
//! (producer side, consumer side) and the driver below.

mod consumer;
pub(crate) mod consumer_side;
pub(crate) mod control;
mod producer;
mod producer_consumer;
pub(crate) mod producer_side;
mod shared;

pub(crate) use consumer::{InitialSubscription, Target};

pub(crate) use consumer::ConsumerRuntime;
pub(crate) use consumer_side::ConsumerSide;
pub(crate) use producer::ProducerRuntime;
pub(crate) use producer_consumer::ProducerConsumerRuntime;
pub(crate) use producer_side::ProducerSide;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use crate::context::Inlet;
use crate::error::{CallError, StartError, SubscribeError, UnknownSubscription};
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::exit_watch::ExitSender;
use crate::handle::{DEFAULT_CALL_TIMEOUT, StageRef, wait_reply};
use crate::kind::StageKind;
use crate::lifecycle::{Lifecycle, Requests};
use crate::registry::{ProducerEntryMaker, Registry, WeakRegistry};
use crate::runtime::control::Control;
use crate::stage::Init;
use crate::stats::{StageState, StatsCell, SubscriptionDemand};
use crate::subscription::SubscriptionTag;
use crate::timers::Fired;
use crate::wire::{Address, Envelope, ForStage};

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

/// Runs the `terminate` hook; its panic is logged (the stage stops anyway).
pub(crate) async fn run_terminate(hook: impl Future<Output = ()>) {
    if let Err(panic) = catch(hook).await {
        tracing::error!("terminate hook panicked: {panic}");
    }
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
        Err(CallError::NotAlive | CallError::Stopped(_)) => Err(SubscribeError::ProducerNotAlive),
        Err(CallError::Timeout) => Err(SubscribeError::Timeout),
    }
}

/// One kind of stage's loop body.
pub(crate) trait Runner: Send + 'static {
    type Kind: StageKind;

    /// `init`, then the initial subscriptions.
    fn start(&mut self) -> impl Future<Output = Result<(), StartError>> + Send;

    /// Handles one message, and whatever it made ready.
    fn handle(&mut self, envelope: Envelope<Self::Kind>) -> impl Future<Output = ()> + Send;

    /// Runs `handle_message`; its error or panic stops the stage.
    fn on_message(
        &mut self,
        message: <Self::Kind as StageKind>::Message,
    ) -> impl Future<Output = ()> + Send;

    /// Takes an info in: a stage that emits sends it on behind the events it buffered,
    /// one that only receives handles it at once.
    fn on_info(
        &mut self,
        message: <Self::Kind as StageKind>::Message,
    ) -> impl Future<Output = ()> + Send;

    /// The demand pending on each of the stage's subscriptions.
    fn demands(&self, into: &mut Vec<SubscriptionDemand>);

    /// The stage's own handle and stop request.
    fn control_ref(&self) -> &Control<Self::Kind>;

    /// The same, to change.
    fn control_mut(&mut self) -> &mut Control<Self::Kind>;

    /// Producers whose end was abnormal (see [`Requests::urgent`]): stops the stage
    /// now if one of its subscriptions' cancel mode says so.
    fn urgent_cancels(
        &mut self,
        urgent: Vec<(SubscriptionTag, CancelReason)>,
    ) -> impl Future<Output = ()> + Send;

    /// Starts a drain: upstream subscriptions are cancelled (what they delivered is
    /// still handled), and nothing more is produced.
    fn begin_drain(&mut self) -> impl Future<Output = ()> + Send;

    /// While draining: whether nothing is left to receive or to send.
    fn drained(&self) -> bool;

    /// Counts the events the stage holds and will not handle now that it stops.
    fn count_unhandled(&mut self) {}

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

    /// After each message, for a runner whose dispatcher may hold events back while
    /// more mail waits: whether more does (`more` reads the mailbox).
    fn mail_waiting(&mut self, more: impl FnOnce() -> bool) {
        let _ = more;
    }

    /// Records the reason peers will be told when the runner is dropped.
    fn set_exit_reason(&mut self, reason: &ExitReason);
}

/// Spawns a stage and waits until it has started.
pub(crate) async fn start<R: Runner>(
    stats: Arc<StatsCell>,
    naming: Option<Naming<R::Kind>>,
    message_capacity: usize,
    make: impl FnOnce(StageRef<R::Kind>) -> R,
) -> Result<StageRef<R::Kind>, StartError> {
    let (sender, mailbox) = mpsc::unbounded_channel();
    let (exit_sender, exit) = crate::exit_watch::channel();
    let life = Arc::new(Lifecycle::new(message_capacity));
    let me = StageRef::new(Address::Mailbox(sender), exit, stats.clone(), life.clone());
    // The caller's handle, counted from the start: the stage may check whether it is
    // reachable before the caller has it.
    let handle = me.clone();
    let registered = match naming {
        Some(naming) => {
            let producer = naming.producer.map(|make| make(&me));
            naming
                .registry
                .register(&naming.name, &me, producer)
                .map_err(StartError::NameTaken)?;
            Some((naming.registry.downgrade(), naming.name))
        }
        None => None,
    };
    let poked = me.uncounted();
    crate::reachability::add_stage(
        me.id(),
        life,
        // In the mailbox's order, behind what is already queued: a stage that learns
        // that its producer ended stops for that reason, not as unreachable.
        Box::new(move || {
            let _ = poked.send(Envelope::Stage(ForStage::CheckReachable));
        }),
    );
    // Made here, not in the task: a task dropped before it ran still drops it, and
    // so forgets the stage.
    let mailbox = Mailbox {
        receiver: mailbox,
        reason: ExitReason::Killed,
        stats,
        stage: me.id(),
        life: me.lifecycle().clone(),
        unsampled: 0,
    };
    let runner = make(me.uncounted());
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
        Ok(Ok(())) => Ok(handle),
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
    pub(crate) producer: Option<ProducerEntryMaker<K>>,
}

async fn drive<R: Runner>(
    mut runner: R,
    mut mailbox: Mailbox<R::Kind>,
    started: oneshot::Sender<Result<(), StartError>>,
    exit: ExitSender,
    registered: Option<(WeakRegistry, String)>,
) {
    let stats = runner.stats().clone();
    let life = runner.control_ref().me.lifecycle().clone();
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
        life.set_stopping(&reason);
        unregister(runner.stage_id());
        finish(runner, mailbox, &exit, reason);
        let _ = started.send(Err(error));
        return;
    }
    stats.set_state(StageState::Running);
    tracing::debug!("stage started");
    let _ = started.send(Ok(()));
    // Most hooks catch their own panics; this catches the panics of the hot hooks
    // (`handle_events`, `handle_demand`: a catch per call moves the hook's future, which
    // cost 4-8 % of throughput) and of the user's code that runs outside hooks (a
    // dispatcher, a selector, a partition's hash), so that they too stop the stage with
    // the panic as its reason, through `terminate`. It wraps the whole loop, not each
    // message: a wrapper per message would move the handler's future. So does the race
    // with a stop that timed out, which drops the loop, and the hook it runs.
    let reason = {
        let running = std::pin::pin!(run(&mut runner, &mut mailbox, &life));
        Guarded {
            running,
            life: &life,
            registered: false,
        }
        .await
    };
    if reason.is_graceful() {
        tracing::debug!(%reason, "stage stopping");
    } else {
        tracing::warn!(%reason, "stage stopping");
    }
    // Callers whose replies the stage dropped learn why, from now on.
    life.set_stopping(&reason);
    drop(life.take_requests());
    runner.count_unhandled();
    stats.set_state(StageState::Stopping);
    runner.terminate(&reason).await;
    unregister(runner.stage_id());
    finish(runner, mailbox, &exit, reason);
}

/// The stage's loop, as its task polls it: a panic of the loop stops the stage with
/// the panic as its reason, and a stop that timed out ([`Lifecycle::abandon`]) drops
/// the loop, and the hook it runs. One poll of this costs a call into the loop and
/// one load of the abandon flag (a `select!` over `catch` and an abandon future cost
/// the loop a tenth of its instructions per message).
struct Guarded<'a, F> {
    running: Pin<&'a mut F>,
    life: &'a Lifecycle,
    /// Whether the task's waker is registered for the abandon signal.
    registered: bool,
}

impl<F: Future<Output = ExitReason>> Future for Guarded<'_, F> {
    type Output = ExitReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ExitReason> {
        let this = &mut *self;
        match std::panic::catch_unwind(AssertUnwindSafe(|| this.running.as_mut().poll(cx))) {
            Ok(Poll::Ready(reason)) => return Poll::Ready(reason),
            Err(payload) => return Poll::Ready(ExitReason::from_panic(&*payload)),
            Ok(Poll::Pending) => {}
        }
        if this.life.poll_abandoned(cx, &mut this.registered) {
            Poll::Ready(ExitReason::ShutdownTimedOut)
        } else {
            Poll::Pending
        }
    }
}

/// How often (in messages taken) a stage publishes its mailbox's length.
const MAILBOX_SAMPLE: u32 = 64;

/// What the loop takes next.
enum Next<K: StageKind> {
    Mail(Option<Envelope<K>>),
    Timer(Fired<K::Message>),
}

/// The stage's loop: lifecycle requests first, then due timers, then the mailbox, one
/// message at a time, until the stage is to stop.
async fn run<R: Runner>(
    runner: &mut R,
    mailbox: &mut Mailbox<R::Kind>,
    life: &Lifecycle,
) -> ExitReason {
    // After a timer, the mailbox goes first: timers that are always due never
    // starve it.
    let mut mail_first = false;
    loop {
        if life.has_requests() {
            apply_requests(runner, life.take_requests()).await;
        }
        let control = runner.control_ref();
        if control.stop.is_none() && control.draining.is_some() && runner.drained() {
            let control = runner.control_mut();
            let reason = control.draining.clone().unwrap_or(ExitReason::Shutdown);
            control.stop_with(reason);
        }
        if let Some(reason) = runner.stop_reason() {
            return reason;
        }
        let envelope = if runner.control_ref().timers.is_empty() {
            // The usual case, without a race with timers. `poll_recv` rather than
            // `recv`: one future less, and tokio's receive is inlined here (47
            // instructions less per round trip).
            mail_first = false;
            match std::future::poll_fn(|cx| mailbox.receiver.poll_recv(cx)).await {
                Some(envelope) => mailbox.took(envelope, life),
                None => return ExitReason::Killed,
            }
        } else {
            let next = if mail_first {
                tokio::select! {
                    biased;
                    envelope = mailbox.receiver.recv() => Next::Mail(envelope),
                    fired = runner.control_mut().timers.next_due() => Next::Timer(fired),
                }
            } else {
                tokio::select! {
                    biased;
                    fired = runner.control_mut().timers.next_due() => Next::Timer(fired),
                    envelope = mailbox.receiver.recv() => Next::Mail(envelope),
                }
            };
            mail_first = matches!(next, Next::Timer(_));
            match next {
                Next::Mail(Some(envelope)) => mailbox.took(envelope, life),
                Next::Mail(None) => return ExitReason::Killed,
                Next::Timer(Fired::Message(message)) => Envelope::Stage(ForStage::Message(message)),
                Next::Timer(Fired::DrainDeadline) => {
                    runner.control_mut().check_drain_deadline();
                    continue;
                }
            }
        };
        if life.has_requests() {
            apply_requests(runner, life.take_requests()).await;
            if runner.control_ref().stop.is_some() {
                mailbox.refuse(envelope);
                continue;
            }
        }
        runner.handle(envelope).await;
        runner.mail_waiting(|| !mailbox.receiver.is_empty());
    }
}

/// Handles mail for the stage as a whole, the same for every kind.
pub(crate) async fn stage_mail<R: Runner>(
    runner: &mut R,
    mail: ForStage<<R::Kind as StageKind>::Message>,
) {
    match mail {
        ForStage::Message(message) => runner.on_message(message).await,
        ForStage::Info { message, queued } => {
            if let Some(queued) = queued {
                let _ = queued.send(());
            }
            runner.on_info(message).await;
        }
        ForStage::DemandSnapshot(reply) => {
            let mut demands = Vec::new();
            runner.demands(&mut demands);
            let _ = reply.send(demands);
        }
        ForStage::Stop(reason) => runner.control_mut().stop_with(reason),
        ForStage::Wake => {}
        ForStage::Barrier(reached) => {
            let _ = reached.send(());
        }
        ForStage::CheckReachable => check_reachable(runner.control_mut()),
    }
}

/// Carries out what was asked of the stage ahead of its mailbox.
pub(crate) async fn apply_requests<R: Runner>(runner: &mut R, requests: Requests) {
    let Requests {
        stop,
        drain,
        urgent,
        replies,
    } = requests;
    if let Some(reason) = stop {
        runner.control_mut().stop_with(reason);
    }
    if !urgent.is_empty() && runner.control_ref().stop.is_none() {
        runner.urgent_cancels(urgent).await;
    }
    if let Some((reason, deadline)) = drain {
        if runner.control_ref().draining.is_none() && runner.control_ref().stop.is_none() {
            runner.control_mut().start_drain(reason, deadline);
            runner.control_mut().check_drain_deadline();
            runner.begin_drain().await;
        }
    }
    // Reply handles the stage's code dropped: their callers learn whether it stops.
    if let Some(reason) = &runner.control_ref().stop {
        runner.control_ref().me.lifecycle().set_stopping(reason);
    }
    drop(replies);
}

/// Stops the stage if no user code can reach it or a stage joined to it.
pub(crate) fn check_reachable<K: StageKind>(control: &mut Control<K>) {
    if crate::reachability::is_unreachable(control.me.id()) {
        tracing::info!("stage {} stopping: unreachable", control.me.id());
        control.stop_with(ExitReason::Unreachable);
    }
}

/// Between two batches of a delivery: carries out what was asked ahead of the
/// mailbox; true if the stage is to stop (the caller counts the rest as unhandled).
pub(crate) async fn stops_between_batches<R: Runner>(runner: &mut R) -> bool {
    if runner.control_ref().me.lifecycle().has_requests() {
        let requests = runner.control_ref().me.lifecycle().take_requests();
        apply_requests(runner, requests).await;
    }
    let control = runner.control_mut();
    if control.draining.is_some() {
        control.check_drain_deadline();
    }
    control.stop.is_some()
}

/// Tells the peers, closes the mailbox (pending calls fail), publishes the reason.
fn finish<R: Runner>(
    mut runner: R,
    mut mailbox: Mailbox<R::Kind>,
    exit: &ExitSender,
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
    /// Where the events left in it are counted as unhandled.
    stats: Arc<StatsCell>,
    stage: crate::StageId,
    life: Arc<Lifecycle>,
    /// Messages taken since the mailbox's length was last published: reading it reads
    /// the senders' tail, a cache line they write at every send.
    unsampled: u32,
}

impl<K: StageKind> Mailbox<K> {
    /// Accounts for an envelope taken from the mailbox: a user message leaves the
    /// entry bound, and every [`MAILBOX_SAMPLE`] messages the mailbox's length is
    /// published.
    #[inline(always)]
    fn took(&mut self, envelope: Envelope<K>, life: &Lifecycle) -> Envelope<K> {
        if envelope.is_user_message() {
            life.entry.release();
        }
        self.unsampled += 1;
        if self.unsampled == MAILBOX_SAMPLE {
            self.unsampled = 0;
            self.stats.set_mailbox_len(self.receiver.len());
        }
        envelope
    }

    /// Disposes of mail the stage will not handle: its events are counted as
    /// unhandled, a subscription is refused.
    fn refuse(&self, envelope: Envelope<K>) {
        envelope.dispose(&self.stats, &self.life, || self.reason.clone());
    }
}

impl<K: StageKind> Drop for Mailbox<K> {
    fn drop(&mut self) {
        // Killed: reply handles dropped from now on fail their calls at once, and those
        // already deferred go now.
        self.life.set_stopping(&self.reason);
        drop(self.life.take_requests());
        // The stage is gone, stopped or killed: it no longer joins anything.
        crate::reachability::remove_stage(self.stage);
        self.receiver.close();
        while let Ok(envelope) = self.receiver.try_recv() {
            self.refuse(envelope);
        }
    }
}

/// The consumer half, as a hook's context sees it. Here rather than with the half, so
/// that the half, which streams use too, stays below the contexts.
impl<T: Send + 'static> Inlet<T> for ConsumerSide<T> {
    fn ask(&mut self, tag: SubscriptionTag, demand: usize) -> Result<(), UnknownSubscription> {
        ConsumerSide::ask(self, tag, demand)
    }

    fn cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: ExitReason,
    ) -> Result<(), UnknownSubscription> {
        ConsumerSide::cancel(self, tag, reason)
    }

    fn tags(&self) -> Vec<SubscriptionTag> {
        ConsumerSide::tags(self)
    }
}
