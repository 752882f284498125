//! What the three loops share: subscribing to producers and ending those subscriptions
//! (consumers and producer-consumers), and accepting consumers (producers and
//! producer-consumers). Each loop exposes its hooks and halves through a small trait.

use std::future::Future;

use crate::error::{StartError, SubscribeError};
use crate::exit::{BoxError, CancelMode, CancelReason, ExitReason, SharedError};
use crate::kind::{EmitsEvents, ReceivesEvents};
use crate::options::SubscribeOptions;
use crate::runtime::{ConsumerSide, InitialSubscription, ProducerSide, Runner, await_subscription};
use crate::subscription::AskMode;
use crate::subscription::SubscriptionTag;
use crate::wire::{ConsumerRequest, SubscribeRequest, SubscribeToRequest, answer};

/// A loop that subscribes to producers.
pub(crate) trait Receiving: Runner<Kind: ReceivesEvents> {
    fn input(&mut self) -> &mut ConsumerSide<<Self::Kind as crate::kind::StageKind>::In>;

    /// Runs `handle_producer_subscribed`; an error or panic stops the stage.
    fn on_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
    ) -> impl Future<Output = Result<AskMode, ExitReason>> + Send;

    /// Runs `handle_cancel`; an error or panic stops the stage.
    fn on_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
    ) -> impl Future<Output = Result<(), ExitReason>> + Send;
}

/// Makes a stage's initial subscriptions in order, each answered before the next.
pub(crate) async fn subscribe_initial<R: Receiving>(
    runner: &mut R,
    initial: Vec<InitialSubscription<<R::Kind as crate::kind::StageKind>::In>>,
) -> Result<(), StartError> {
    for (target, options) in initial {
        // `_held` keeps the producer reachable until it is joined to this stage.
        let (producer, _held) = target.resolve()?;
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let request = SubscribeToRequest {
            tag: SubscriptionTag::next(),
            producer,
            options,
            reply: Some(reply),
        };
        subscribe(runner, request).await;
        await_subscription(receiver).await?;
    }
    Ok(())
}

/// Subscribes to a producer as `tag`, answering `reply` (if any) once the producer
/// decides.
pub(crate) async fn subscribe<R: Receiving>(
    runner: &mut R,
    request: SubscribeToRequest<<R::Kind as crate::kind::StageKind>::In>,
) {
    let SubscribeToRequest {
        tag,
        producer,
        options,
        reply,
    } = request;
    if let Err(error) = options.validate() {
        tracing::error!("subscription with invalid options ignored: {error}");
        return answer(reply, Err(error.into()));
    }
    let me = runner.control_mut().me.id();
    crate::reachability::link(tag, me, producer.stage_id());
    runner.input().subscribing = Some((tag, 0));
    let mode = runner.on_producer_subscribed(tag, &options).await;
    let mode = match mode {
        Ok(mode) => mode,
        Err(reason) => {
            crate::reachability::unlink(tag, me);
            runner.input().subscribing = None;
            answer(reply, Err(SubscribeError::ConsumerStopped(reason.clone())));
            runner.control_mut().stop = Some(reason);
            return;
        }
    };
    tracing::debug!(%tag, "subscribing to a producer");
    let cancel = options.cancel_mode();
    let sink = runner.control_mut().me.sink();
    let subscribed = runner
        .input()
        .subscribe(tag, producer, sink, options, mode, reply);
    if subscribed.is_ok() {
        // A subscription made while the stage drains is drained too.
        if let Some(reason) = runner.control_mut().draining.clone() {
            runner.input().begin_drain(&reason);
        }
    }
    if let Err(reply) = subscribed {
        crate::reachability::unlink(tag, me);
        match reply {
            Some(reply) => {
                // `handle_producer_subscribed` took it in: `handle_cancel` sees it go,
                // as for an async subscription, but a failed sync subscription never
                // stops the consumer (the caller hears of it instead).
                let gone = CancelReason::Down(ExitReason::NotAlive);
                cancelled(runner, tag, gone, CancelMode::Temporary).await;
                answer(Some(reply), Err(SubscribeError::ProducerNotAlive));
            }
            None => {
                cancelled(
                    runner,
                    tag,
                    CancelReason::Down(ExitReason::NotAlive),
                    cancel,
                )
                .await
            }
        }
    }
}

/// Carries out what the stage's user asks of its consumer half.
pub(crate) async fn consumer_request<R: Receiving>(
    runner: &mut R,
    request: ConsumerRequest<<R::Kind as crate::kind::StageKind>::In>,
) {
    match request {
        ConsumerRequest::SubscribeTo(request) => subscribe(runner, *request).await,
        ConsumerRequest::Cancel { tag, reason } => {
            if let Err(error) = runner.input().cancel(tag, reason) {
                tracing::debug!("cancel ignored: {error}");
            }
        }
        ConsumerRequest::Ask { tag, demand } => {
            if let Err(error) = runner.input().ask(tag, demand) {
                tracing::warn!("ask ignored: {error}");
            }
        }
    }
}

/// Runs `handle_cancel`, then stops the stage if the cancel mode says so.
pub(crate) async fn cancelled<R: Receiving>(
    runner: &mut R,
    tag: SubscriptionTag,
    reason: CancelReason,
    mode: CancelMode,
) {
    tracing::debug!(%tag, %reason, "subscription to a producer ended");
    if let Err(failure) = runner.on_cancel(tag, &reason).await {
        runner.control_mut().stop = Some(failure);
        return;
    }
    let control = runner.control_mut();
    if mode.stops_consumer(&reason) && control.stop.is_none() {
        tracing::info!(
            "stage {} stopping: subscription {tag} {reason}",
            control.me.id()
        );
        control.stop = Some(reason.exit_reason());
    }
}

/// Ends at once the subscriptions whose producer ended abnormally, when their cancel
/// mode stops the stage: it then stops before handling the events still queued from
/// them. The others wait for their turn in the mailbox, behind those events.
pub(crate) async fn urgent_cancels<R: Receiving>(
    runner: &mut R,
    urgent: Vec<(SubscriptionTag, CancelReason)>,
) {
    for (tag, reason) in urgent {
        if runner.control_mut().stop.is_some() {
            return;
        }
        if !runner.input().stops_at(tag, &reason) {
            continue;
        }
        if let Some(mode) = runner.input().remove(tag) {
            cancelled(runner, tag, reason, mode).await;
        }
    }
}

/// Runs `handle_cancel` for the subscriptions the stage cancelled itself; it never
/// stops the stage by itself.
pub(crate) async fn self_cancelled<R: Receiving>(runner: &mut R) {
    for (tag, reason) in std::mem::take(&mut runner.input().self_cancelled) {
        cancelled(
            runner,
            tag,
            CancelReason::Cancelled(reason),
            CancelMode::Temporary,
        )
        .await;
    }
}

/// A loop that accepts consumers.
pub(crate) trait Emitting: Runner<Kind: EmitsEvents> {
    fn output(
        &mut self,
    ) -> &mut ProducerSide<
        <Self::Kind as crate::kind::StageKind>::Out,
        <Self::Kind as crate::kind::StageKind>::Message,
    >;

    /// Runs `handle_consumer_subscribed`: `Ok(Err)` rejects, `Err` is a panic.
    fn on_consumer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
    ) -> impl Future<Output = Result<Result<(), BoxError>, ExitReason>> + Send;

    /// Runs `handle_cancel` for a consumer's subscription; `Err` stops the stage.
    fn on_consumer_cancelled(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
    ) -> impl Future<Output = Result<(), ExitReason>> + Send;
}

/// Accepts or rejects a consumer's subscription, answering `reply`. Returns the
/// upstream demand left to serve.
pub(crate) async fn accept_consumer<E: Emitting>(
    runner: &mut E,
    request: SubscribeRequest<<E::Kind as crate::kind::StageKind>::Out>,
) -> usize {
    let SubscribeRequest {
        tag,
        sink,
        options,
        reply,
    } = request;
    if let Err(error) = runner.output().add_consumer(tag, sink) {
        answer(reply, Err(SubscribeError::Rejected(error)));
        return 0;
    }
    match runner.on_consumer_subscribed(tag, &options).await {
        Err(panic) => {
            runner
                .output()
                .reject(tag, CancelReason::Down(panic.clone()));
            answer(reply, Err(SubscribeError::ProducerNotAlive));
            runner.control_mut().stop = Some(panic);
            0
        }
        Ok(Err(error)) => {
            let error = SharedError::from(error);
            runner
                .output()
                .reject(tag, CancelReason::Rejected(error.clone()));
            answer(reply, Err(SubscribeError::Rejected(error)));
            0
        }
        Ok(Ok(())) => match runner.output().accept(tag, &options) {
            Ok(upstream) => {
                tracing::debug!(%tag, "consumer subscribed");
                answer(reply, Ok(tag));
                upstream
            }
            Err(error) => {
                // `handle_consumer_subscribed` took the subscription in: as GenStage
                // does, `handle_cancel` sees it go, with the reason the consumer got,
                // before the subscriber hears of the refusal.
                let reason = CancelReason::Rejected(error.clone());
                if let Err(failure) = runner.on_consumer_cancelled(tag, &reason).await {
                    runner.control_mut().stop = Some(failure);
                }
                answer(reply, Err(SubscribeError::Rejected(error)));
                0
            }
        },
    }
}

/// Logs and reports the discards the buffer made since last time.
pub(crate) fn report_discards(
    discarded: usize,
    report: impl FnOnce(usize) -> bool,
    stage: crate::StageId,
) {
    if discarded > 0 && report(discarded) {
        tracing::warn!("stage {stage} discarded {discarded} events from its buffer");
    }
}
