//! The loop of a [`Consumer`] stage.

use crate::context::{Context, NoOutlet};
use crate::error::{StartError, SubscribeError};
use crate::exit::{CancelReason, ExitReason};
use crate::kind::ConsumerKind;
use crate::options::SubscribeOptions;
use crate::registry::Registry;
use crate::runtime::control::Control;
use crate::runtime::shared::{self, Receiving};
use crate::runtime::{
    ConsumerSide, Runner, guarded, init_outcome, run_terminate, stage_mail, stops_between_batches,
};
use crate::stage::Consumer;
use crate::stats::SubscriptionDemand;
use crate::subscription::{AskMode, SubscriptionTag};
use crate::wire::{Envelope, ForConsumer, ProducerPort};

/// A producer to subscribe to: a handle, or a name resolved when subscribing.
pub(crate) enum Target<T> {
    /// The port for the consumer's table, and a handle that keeps the producer
    /// reachable until the subscription is made (the builder is user code's).
    Port(Box<dyn ProducerPort<T>>, Box<dyn Send + Sync>),
    Name(Registry, String),
}

/// A resolved target: the port, and what keeps the producer reachable meanwhile.
pub(crate) type Resolved<T> = (Box<dyn ProducerPort<T>>, Option<Box<dyn Send + Sync>>);

impl<T: Send + 'static> Target<T> {
    pub(crate) fn resolve(self) -> Result<Resolved<T>, SubscribeError> {
        match self {
            Target::Port(port, held) => Ok((port, Some(held))),
            Target::Name(registry, name) => registry.producer_port(&name).map(|port| (port, None)),
        }
    }
}

/// A subscription to make when the stage starts.
pub(crate) type InitialSubscription<T> = (Target<T>, SubscribeOptions);

pub(crate) struct ConsumerRuntime<S: Consumer> {
    stage: S,
    side: ConsumerSide<S::Event>,
    control: Control<ConsumerKind<S>>,
    initial: Vec<InitialSubscription<S::Event>>,
    /// A consumer emits nothing: its context's outlet.
    no_outlet: NoOutlet,
}

impl<S: Consumer> ConsumerRuntime<S> {
    pub(crate) fn new(
        stage: S,
        control: Control<ConsumerKind<S>>,
        initial: Vec<InitialSubscription<S::Event>>,
    ) -> Self {
        ConsumerRuntime {
            stage,
            side: ConsumerSide::new(control.me.stats_cell().clone(), control.me.id()),
            control,
            initial,
            no_outlet: NoOutlet,
        }
    }

    fn parts(&mut self) -> (&mut S, Context<'_, ConsumerKind<S>>) {
        let context = Context::new(&mut self.control, &mut self.no_outlet, &mut self.side);
        (&mut self.stage, context)
    }

    fn fail(&mut self, reason: ExitReason) {
        self.control.stop = Some(reason);
    }
}

impl<S: Consumer> Receiving for ConsumerRuntime<S> {
    fn input(&mut self) -> &mut ConsumerSide<S::Event> {
        &mut self.side
    }

    async fn on_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
    ) -> Result<AskMode, ExitReason> {
        let (stage, mut ctx) = self.parts();
        guarded(stage.handle_producer_subscribed(tag, options, &mut ctx)).await
    }

    async fn on_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
    ) -> Result<(), ExitReason> {
        let (stage, mut ctx) = self.parts();
        guarded(stage.handle_cancel(tag, reason, &mut ctx)).await
    }
}

impl<S: Consumer> Runner for ConsumerRuntime<S> {
    type Kind = ConsumerKind<S>;

    async fn start(&mut self) -> Result<(), StartError> {
        let (stage, mut ctx) = self.parts();
        init_outcome(guarded(stage.init(&mut ctx)).await)?;
        let initial = std::mem::take(&mut self.initial);
        shared::subscribe_initial(self, initial).await
    }

    async fn handle(&mut self, envelope: Envelope<ConsumerKind<S>>) {
        // A consumer has no producer half: no mail can be addressed to one.
        match envelope {
            Envelope::Consumer(mail, ()) => match mail {
                // The delivery is handled here rather than in a method of its own:
                // one future less to make, poll and drop per delivery.
                ForConsumer::Events { tag, events } => {
                    // `None` for an unknown subscription: its events are discarded.
                    if let Some(mut batches) = self.side.batches(tag, events.into_vec()) {
                        while let Some(batch) = batches.next() {
                            let (stage, mut ctx) = self.parts();
                            // A hot hook: its panic unwinds to the stage loop's catch (see `drive`).
                            if let Err(error) =
                                stage.handle_events(batch.events, tag, &mut ctx).await
                            {
                                self.fail(ExitReason::error(error));
                            }
                            if self.control.stop.is_some()
                                || !self.side.after_batch(tag, batch.ask_after, &mut batches)
                            {
                                break;
                            }
                            // A stop asked meanwhile overtakes the rest of the delivery
                            // (and the `handle_cancel` of subscriptions the hook
                            // cancelled); after the last batch with nothing left to
                            // do, the loop checks before the next message anyway.
                            if (batches.len() > 0 || !self.side.self_cancelled.is_empty())
                                && stops_between_batches(self).await
                            {
                                break;
                            }
                        }
                        if self.control.stop.is_some() {
                            let rest: usize = batches.map(|batch| batch.events.len()).sum();
                            self.side.count_unhandled(rest);
                        }
                    }
                }
                ForConsumer::ProducerCancelled { tag, reason } => {
                    if let Some(mode) = self.side.remove(tag) {
                        shared::cancelled(self, tag, reason, mode).await;
                    }
                }
                ForConsumer::Request(request) => shared::consumer_request(self, request).await,
            },
            Envelope::Stage(mail) => stage_mail(self, mail).await,
        }
        while !self.side.self_cancelled.is_empty() && self.control.stop.is_none() {
            shared::self_cancelled(self).await;
        }
    }

    async fn on_message(&mut self, message: S::Message) {
        let (stage, mut ctx) = self.parts();
        if let Err(reason) = guarded(stage.handle_message(message, &mut ctx)).await {
            self.fail(reason);
        }
    }

    /// A consumer holds no events: an info is handled at once.
    async fn on_info(&mut self, message: S::Message) {
        self.on_message(message).await;
    }

    fn demands(&self, into: &mut Vec<SubscriptionDemand>) {
        self.side.demands(into);
    }

    fn control_ref(&self) -> &Control<Self::Kind> {
        &self.control
    }

    fn control_mut(&mut self) -> &mut Control<Self::Kind> {
        &mut self.control
    }

    async fn urgent_cancels(&mut self, urgent: Vec<(SubscriptionTag, CancelReason)>) {
        shared::urgent_cancels(self, urgent).await;
    }

    async fn begin_drain(&mut self) {
        if let Some(reason) = &self.control.draining {
            self.side.begin_drain(reason);
        }
    }

    fn drained(&self) -> bool {
        self.side.is_empty()
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        run_terminate(self.stage.terminate(reason)).await;
    }

    fn set_exit_reason(&mut self, reason: &ExitReason) {
        self.side.exit_reason = reason.clone();
    }
}
