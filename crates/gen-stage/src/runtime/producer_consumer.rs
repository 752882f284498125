//! The loop of a [`ProducerConsumer`] stage: input is handled only while consumers
//! have demand for output, which is what carries back-pressure upstream.

use std::collections::VecDeque;

use crate::context::{Context, Control};
use crate::error::{StartError, SubscribeError};
use crate::exit::{CancelMode, CancelReason, ExitReason, SharedError};
use crate::kind::ProducerConsumerKind;
use crate::options::SubscribeOptions;
use crate::protocol::{Envelope, ProducerPort, SubscribeReply};
use crate::runtime::consumer::InitialSubscription;
use crate::runtime::{
    ConsumerSide, ProducerSide, Runner, answer, await_subscription, catch, guarded, init_outcome,
};
use crate::stage::ProducerConsumer;
use crate::subscription::SubscriptionTag;

/// Input waiting for downstream demand, in arrival order.
enum Pending<I, M> {
    Events(SubscriptionTag, Vec<I>),
    Cancelled(SubscriptionTag, CancelReason),
    Info(M),
}

pub(crate) struct ProducerConsumerRuntime<S: ProducerConsumer> {
    stage: S,
    output: ProducerSide<S::Output, S::Message>,
    input: ConsumerSide<S::Input>,
    control: Control<ProducerConsumerKind<S>>,
    pending: VecDeque<Pending<S::Input, S::Message>>,
    initial: Vec<InitialSubscription<S::Input>>,
}

impl<S: ProducerConsumer> ProducerConsumerRuntime<S> {
    pub(crate) fn new(
        stage: S,
        output: ProducerSide<S::Output, S::Message>,
        control: Control<ProducerConsumerKind<S>>,
        initial: Vec<InitialSubscription<S::Input>>,
    ) -> Self {
        ProducerConsumerRuntime {
            stage,
            output,
            input: ConsumerSide::new(control.me.stats_cell().clone()),
            control,
            pending: VecDeque::new(),
            initial,
        }
    }

    fn parts(&mut self) -> (&mut S, Context<'_, ProducerConsumerKind<S>>) {
        let context = Context {
            producer: Some(&mut self.output),
            consumer: Some(&mut self.input),
            control: &mut self.control,
        };
        (&mut self.stage, context)
    }

    fn fail(&mut self, reason: ExitReason) {
        self.control.stop = Some(reason);
    }

    fn can_process(&self) -> bool {
        self.output.unmet_demand > 0 && self.control.stop.is_none()
    }

    /// Handles queued input while there is downstream demand.
    async fn process(&mut self) {
        while self.can_process() {
            let Some(next) = self.pending.pop_front() else {
                return;
            };
            match next {
                Pending::Events(tag, events) => self.events(tag, events).await,
                Pending::Cancelled(tag, reason) => self.producer_cancelled(tag, reason).await,
                Pending::Info(message) => self.output.store_info(message),
            }
        }
    }

    async fn events(&mut self, tag: SubscriptionTag, events: Vec<S::Input>) {
        let Some(batches) = self.input.batches(tag, events) else {
            return;
        };
        for batch in batches {
            let (stage, mut ctx) = self.parts();
            match guarded(stage.handle_events(batch.events, tag, &mut ctx)).await {
                Ok(output) => self.output.emit(output),
                Err(reason) => self.fail(reason),
            }
            if self.control.stop.is_some() {
                return;
            }
            self.input.ask_after(tag, batch.ask_after);
        }
    }

    async fn producer_cancelled(&mut self, tag: SubscriptionTag, reason: CancelReason) {
        if let Some(mode) = self.input.remove(tag) {
            self.cancelled(tag, reason, mode).await;
        }
    }

    async fn cancelled(&mut self, tag: SubscriptionTag, reason: CancelReason, mode: CancelMode) {
        let (stage, mut ctx) = self.parts();
        if let Err(failure) = guarded(stage.handle_cancel(tag, &reason, &mut ctx)).await {
            return self.fail(failure);
        }
        if mode.stops_consumer(&reason) && self.control.stop.is_none() {
            tracing::info!(
                "stage {} stopping: subscription {tag} {reason}",
                self.control.me.id()
            );
            self.fail(reason.exit_reason());
        }
    }

    async fn subscribe(
        &mut self,
        producer: Box<dyn ProducerPort<S::Input>>,
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
            .input
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

    async fn consumer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: SubscribeOptions,
        reply: Option<SubscribeReply>,
    ) {
        let (stage, mut ctx) = self.parts();
        match catch(stage.handle_consumer_subscribed(tag, &options, &mut ctx)).await {
            Err(panic) => {
                self.output.reject(tag, CancelReason::Down(panic.clone()));
                answer(reply, Err(SubscribeError::ProducerNotAlive));
                self.fail(panic);
            }
            Ok(Err(error)) => {
                let error = SharedError::from(error);
                self.output
                    .reject(tag, CancelReason::Rejected(error.clone()));
                answer(reply, Err(SubscribeError::Rejected(error)));
            }
            Ok(Ok(())) => match self.output.accept(tag, &options) {
                Ok(upstream) => {
                    answer(reply, Ok(tag));
                    self.output.unmet_demand += upstream;
                }
                Err(error) => answer(reply, Err(SubscribeError::Rejected(error))),
            },
        }
    }

    async fn message(&mut self, message: S::Message) {
        let (stage, mut ctx) = self.parts();
        if let Err(reason) = guarded(stage.handle_message(message, &mut ctx)).await {
            self.fail(reason);
        }
    }

    async fn flush(&mut self) {
        loop {
            self.process().await;
            if self.control.stop.is_some() {
                break;
            }
            if !self.output.ready_infos.is_empty() {
                for info in std::mem::take(&mut self.output.ready_infos) {
                    self.message(info).await;
                }
            } else if !self.input.self_cancelled.is_empty() {
                for (tag, reason) in std::mem::take(&mut self.input.self_cancelled) {
                    self.cancelled(tag, CancelReason::Cancelled(reason), CancelMode::Temporary)
                        .await;
                }
            } else {
                break;
            }
        }
        let discarded = std::mem::take(&mut self.output.unreported_discards);
        if discarded > 0 && self.stage.handle_discarded(discarded) {
            tracing::warn!(
                "stage {} discarded {discarded} events from its buffer",
                self.control.me.id()
            );
        }
    }
}

impl<S: ProducerConsumer> Runner for ProducerConsumerRuntime<S> {
    type Kind = ProducerConsumerKind<S>;

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

    async fn handle(&mut self, envelope: Envelope<ProducerConsumerKind<S>>) {
        match envelope {
            Envelope::Events { tag, events } => {
                if self.pending.is_empty() && self.can_process() {
                    self.events(tag, events).await;
                } else {
                    self.pending.push_back(Pending::Events(tag, events));
                }
            }
            Envelope::ProducerCancelled { tag, reason } => {
                if self.pending.is_empty() {
                    self.producer_cancelled(tag, reason).await;
                } else {
                    self.pending.push_back(Pending::Cancelled(tag, reason));
                }
            }
            Envelope::Ask { tag, demand } => {
                self.output.unmet_demand += self.output.ask(tag, demand);
            }
            Envelope::Subscribe {
                tag,
                sink,
                options,
                reply,
            } => {
                if self.output.add_consumer(tag, sink) {
                    self.consumer_subscribed(tag, options, reply).await;
                }
            }
            Envelope::ConsumerCancelled { tag, reason } => {
                if let Some(upstream) = self.output.remove_consumer(tag) {
                    self.output.unmet_demand += upstream;
                    let (stage, mut ctx) = self.parts();
                    if let Err(failure) = guarded(stage.handle_cancel(tag, &reason, &mut ctx)).await
                    {
                        self.fail(failure);
                    }
                }
            }
            Envelope::SubscribeTo {
                producer,
                options,
                reply,
            } => self.subscribe(producer, options, reply).await,
            Envelope::Cancel { tag, reason } => {
                if let Err(error) = self.input.cancel(tag, reason) {
                    tracing::debug!("cancel ignored: {error}");
                }
            }
            Envelope::AskManual { tag, demand } => {
                if let Err(error) = self.input.ask(tag, demand) {
                    tracing::warn!("ask ignored: {error}");
                }
            }
            Envelope::Message(message) => self.message(message).await,
            Envelope::Info { message, queued } => {
                if self.pending.is_empty() {
                    self.output.store_info(message);
                } else {
                    self.pending.push_back(Pending::Info(message));
                }
                if let Some(queued) = queued {
                    let _ = queued.send(());
                }
            }
            Envelope::SetDemandMode(mode) => {
                let served: usize = self.output.set_mode(mode).into_iter().sum();
                self.output.unmet_demand += served;
            }
            Envelope::DemandModeQuery(reply) => {
                let _ = reply.send(self.output.demand_mode());
            }
            Envelope::BufferedQuery(reply) => {
                let _ = reply.send(self.output.buffered_count());
            }
            Envelope::Stop(reason) => self.fail(reason),
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
        self.output.exit_reason = reason.clone();
        self.input.exit_reason = reason.clone();
    }
}
