//! The loop of a [`Consumer`] stage.

use crate::context::{Context, Control};
use crate::error::{StartError, SubscribeError};
use crate::exit::{CancelMode, CancelReason, ExitReason};
use crate::kind::ConsumerKind;
use crate::options::SubscribeOptions;
use crate::protocol::{Envelope, ProducerPort, SubscribeReply};
use crate::runtime::{
    ConsumerSide, Runner, answer, await_subscription, catch, guarded, init_outcome,
};
use crate::stage::Consumer;
use crate::subscription::SubscriptionTag;

/// A subscription to make when the stage starts.
pub(crate) type InitialSubscription<T> = (Box<dyn ProducerPort<T>>, SubscribeOptions);

pub(crate) struct ConsumerRuntime<S: Consumer> {
    stage: S,
    side: ConsumerSide<S::Event>,
    control: Control<ConsumerKind<S>>,
    initial: Vec<InitialSubscription<S::Event>>,
}

impl<S: Consumer> ConsumerRuntime<S> {
    pub(crate) fn new(
        stage: S,
        control: Control<ConsumerKind<S>>,
        initial: Vec<InitialSubscription<S::Event>>,
    ) -> Self {
        ConsumerRuntime {
            stage,
            side: ConsumerSide::new(control.me.stats_cell().clone()),
            control,
            initial,
        }
    }

    fn parts(&mut self) -> (&mut S, Context<'_, ConsumerKind<S>>) {
        let context = Context {
            producer: None,
            consumer: Some(&mut self.side),
            control: &mut self.control,
        };
        (&mut self.stage, context)
    }

    fn fail(&mut self, reason: ExitReason) {
        self.control.stop = Some(reason);
    }

    async fn events(&mut self, tag: SubscriptionTag, events: Vec<S::Event>) {
        let Some(batches) = self.side.batches(tag, events) else {
            return;
        };
        for batch in batches {
            let (stage, mut ctx) = self.parts();
            if let Err(reason) = guarded(stage.handle_events(batch.events, tag, &mut ctx)).await {
                self.fail(reason);
            }
            if self.control.stop.is_some() {
                return;
            }
            self.side.ask_after(tag, batch.ask_after);
        }
    }

    /// Subscribes to a producer, answering `reply` (if any) once the producer decides.
    async fn subscribe(
        &mut self,
        producer: Box<dyn ProducerPort<S::Event>>,
        options: SubscribeOptions,
        reply: Option<SubscribeReply>,
    ) {
        if let Err(error) = options.validate() {
            tracing::error!("subscription with invalid options ignored: {error}");
            return answer(reply, Err(error.into()));
        }
        let tag = SubscriptionTag::next();
        let (stage, mut ctx) = self.parts();
        let mode = match guarded(stage.handle_producer_subscribed(tag, &options, &mut ctx)).await {
            Ok(mode) => mode,
            Err(reason) => {
                answer(reply, Err(SubscribeError::ConsumerStopped(reason.clone())));
                return self.fail(reason);
            }
        };
        let cancel = options.cancel_mode();
        let sink = self.control.me.sink();
        if let Err(reply) = self
            .side
            .subscribe(tag, producer, sink, options, mode, reply)
        {
            match reply {
                Some(reply) => answer(Some(reply), Err(SubscribeError::ProducerNotAlive)),
                None => {
                    self.cancelled(tag, CancelReason::Down(ExitReason::NotAlive), cancel)
                        .await
                }
            }
        }
    }

    /// Runs `handle_cancel`, then stops the stage if the cancel mode says so.
    async fn cancelled(&mut self, tag: SubscriptionTag, reason: CancelReason, mode: CancelMode) {
        let (stage, mut ctx) = self.parts();
        if let Err(failure) = guarded(stage.handle_cancel(tag, &reason, &mut ctx)).await {
            return self.fail(failure);
        }
        if mode.stops_consumer(&reason) && self.control.stop.is_none() {
            tracing::info!(
                "consumer {} stopping: subscription {tag} {reason}",
                self.control.me.id()
            );
            self.fail(reason.exit_reason());
        }
    }

    async fn message(&mut self, message: S::Message) {
        let (stage, mut ctx) = self.parts();
        if let Err(reason) = guarded(stage.handle_message(message, &mut ctx)).await {
            self.fail(reason);
        }
    }

    /// Runs `handle_cancel` for the subscriptions the stage cancelled itself.
    async fn flush(&mut self) {
        while !self.side.self_cancelled.is_empty() && self.control.stop.is_none() {
            let cancelled = std::mem::take(&mut self.side.self_cancelled);
            for (tag, reason) in cancelled {
                self.cancelled(tag, CancelReason::Cancelled(reason), CancelMode::Temporary)
                    .await;
            }
        }
    }
}

impl<S: Consumer> Runner for ConsumerRuntime<S> {
    type Kind = ConsumerKind<S>;

    async fn start(&mut self) -> Result<(), StartError> {
        let (stage, mut ctx) = self.parts();
        init_outcome(guarded(stage.init(&mut ctx)).await)?;
        for (producer, options) in std::mem::take(&mut self.initial) {
            let (reply, receiver) = tokio::sync::oneshot::channel();
            self.subscribe(producer, options, Some(reply)).await;
            await_subscription(receiver).await?;
        }
        Ok(())
    }

    async fn handle(&mut self, envelope: Envelope<ConsumerKind<S>>) {
        match envelope {
            Envelope::Events { tag, events } => self.events(tag, events).await,
            Envelope::ProducerCancelled { tag, reason } => {
                if let Some(mode) = self.side.remove(tag) {
                    self.cancelled(tag, reason, mode).await;
                }
            }
            Envelope::SubscribeTo {
                producer,
                options,
                reply,
            } => self.subscribe(producer, options, reply).await,
            Envelope::Cancel { tag, reason } => {
                if let Err(error) = self.side.cancel(tag, reason) {
                    tracing::debug!("cancel ignored: {error}");
                }
            }
            Envelope::AskManual { tag, demand } => {
                if let Err(error) = self.side.ask(tag, demand) {
                    tracing::warn!("ask ignored: {error}");
                }
            }
            Envelope::Message(message) => self.message(message).await,
            Envelope::Info { message, queued } => {
                if let Some(queued) = queued {
                    let _ = queued.send(());
                }
                self.message(message).await;
            }
            Envelope::Stop(reason) => self.fail(reason),
            // A consumer has no consumers and no buffer.
            Envelope::Subscribe { .. }
            | Envelope::Ask { .. }
            | Envelope::ConsumerCancelled { .. }
            | Envelope::SetDemandMode(_)
            | Envelope::DemandModeQuery(_)
            | Envelope::BufferedQuery(_) => {}
        }
        self.flush().await;
    }

    fn stats(&self) -> &std::sync::Arc<crate::stats::StatsCell> {
        self.control.me.stats_cell()
    }

    fn stop_reason(&self) -> Option<ExitReason> {
        self.control.stop.clone()
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        if let Err(panic) = catch(self.stage.terminate(reason)).await {
            tracing::error!("terminate hook panicked: {panic}");
        }
    }

    fn set_exit_reason(&mut self, reason: &ExitReason) {
        self.side.exit_reason = reason.clone();
    }
}
