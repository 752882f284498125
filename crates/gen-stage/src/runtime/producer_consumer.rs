//! The loop of a [`ProducerConsumer`] stage: input is handled only while consumers
//! have demand for output, which is what carries back-pressure upstream.

use std::collections::VecDeque;

use crate::context::Context;
use crate::error::StartError;
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::kind::ProducerConsumerKind;
use crate::options::SubscribeOptions;
use crate::runtime::consumer::InitialSubscription;
use crate::runtime::control::Control;
use crate::runtime::producer_side::Held;
use crate::runtime::shared::{self, Emitting, Receiving};
use crate::runtime::{
    ConsumerSide, ProducerSide, Runner, catch, guarded, init_outcome, run_terminate, stage_mail,
    stops_between_batches,
};
use crate::stage::ProducerConsumer;
use crate::stats::SubscriptionDemand;
use crate::subscription::{AskMode, SubscriptionTag};
use crate::wire::{Envelope, ForConsumer, ForProducer, ProducerRequest};

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
            input: ConsumerSide::new(control.me.stats_cell().clone(), control.me.id()),
            control,
            pending: VecDeque::new(),
            initial,
        }
    }

    fn parts(&mut self) -> (&mut S, Context<'_, ProducerConsumerKind<S>>) {
        let context = Context::new(&mut self.control, &mut self.output, &mut self.input);
        (&mut self.stage, context)
    }

    fn fail(&mut self, reason: ExitReason) {
        self.control.stop = Some(reason);
    }

    fn can_process(&self) -> bool {
        self.output.has_unmet_demand() && self.control.stop.is_none()
    }

    /// Handles queued input while there is downstream demand. A drain with no
    /// consumer left lets the input go: its events are counted as unhandled, and the
    /// producers' acknowledgements are taken.
    async fn process(&mut self) {
        loop {
            let let_go = self.control.draining.is_some()
                && self.control.stop.is_none()
                && self.output.consumer_count() == 0;
            if !self.can_process() && !let_go {
                return;
            }
            let Some(next) = self.pending.pop_front() else {
                return;
            };
            match next {
                Pending::Events(_, events) if let_go => self.input.count_unhandled(events.len()),
                Pending::Events(tag, events) => self.events(tag, events).await,
                Pending::Cancelled(tag, reason) => self.producer_cancelled(tag, reason),
                Pending::Info(message) => self.output.after_buffered(Held::Info(message)),
            }
        }
    }

    async fn events(&mut self, tag: SubscriptionTag, events: Vec<S::Input>) {
        let Some(mut batches) = self.input.batches(tag, events) else {
            return;
        };
        while let Some(batch) = batches.next() {
            let (stage, mut ctx) = self.parts();
            // A hot hook: its panic unwinds to the stage loop's catch (see `drive`).
            let output = match stage.handle_events(batch.events, tag, &mut ctx).await {
                Ok(output) => output,
                Err(error) => {
                    self.fail(ExitReason::error(error));
                    Vec::new()
                }
            };
            // The ask goes upstream before the output goes downstream. Each wakes a
            // task; tokio runs the last one woken next on this thread and hands
            // the other to a sleeping worker. Waking the producer first and the consumer
            // last halved the context switches of a three-stage pipeline (73 000 to
            // 41 000 for 10^9 events) and sped it up by 40 %.
            let more = self.control.stop.is_none()
                && self.input.after_batch(tag, batch.ask_after, &mut batches);
            self.output.emit(output);
            if !more {
                break;
            }
            // A stop asked meanwhile overtakes the rest of the delivery, and the
            // deliveries queued behind it (checked here: `process` goes on to them
            // without the loop's own check).
            if (batches.len() > 0 || !self.pending.is_empty()) && stops_between_batches(self).await
            {
                break;
            }
        }
        if self.control.stop.is_some() {
            let rest: usize = batches.map(|batch| batch.events.len()).sum();
            self.input.count_unhandled(rest);
        }
    }

    /// An upstream subscription ended. When it ended gracefully, its cancellation waits
    /// behind the output already buffered, so that a finite pipeline delivers every
    /// event (see [`Held::Cancelled`]). A failure is handled at once, as GenStage does
    /// (the stage may stop with it, whatever it holds), and so is any end when no
    /// consumer is left to take the output: waiting would never end.
    fn producer_cancelled(&mut self, tag: SubscriptionTag, reason: CancelReason) {
        let graceful = reason.exit_reason().is_graceful();
        let held = Held::Cancelled(tag, reason);
        if graceful && self.output.consumer_count() > 0 {
            self.output.after_buffered(held);
        } else {
            self.output.ready_now(held);
        }
    }

    /// A consumer left (or was cancelled): `handle_cancel` runs.
    async fn consumer_gone(&mut self, tag: SubscriptionTag, reason: &CancelReason) {
        if let Err(failure) = self.on_consumer_cancelled(tag, reason).await {
            self.fail(failure);
        }
    }

    /// Handles input while there is demand, then ready infos and self-cancellations,
    /// until nothing is left to do.
    async fn flush(&mut self) {
        loop {
            // The output side already counts demand a dispatcher created on its own
            // (a broadcast filter, for example) as unmet: input will serve it.
            self.output.take_extra_upstream();
            self.process().await;
            if self.control.stop.is_some() {
                break;
            }
            if self.output.has_ready() {
                for held in self.output.take_ready() {
                    match held {
                        Held::Info(message) => self.on_message(message).await,
                        Held::Cancelled(tag, reason) => {
                            if let Some(mode) = self.input.remove(tag) {
                                shared::cancelled(self, tag, reason, mode).await;
                            }
                        }
                        // The demand a consumer's leaving frees is served by input.
                        Held::CancelConsumer(tag, reason) => {
                            if self.output.remove_consumer(tag, &reason).is_some() {
                                self.consumer_gone(tag, &reason).await;
                            }
                        }
                        Held::ConsumerRemoved(tag, reason, _) => {
                            self.consumer_gone(tag, &reason).await;
                        }
                    }
                }
            } else if !self.input.self_cancelled.is_empty() {
                shared::self_cancelled(self).await;
            } else {
                break;
            }
        }
        let discarded = self.output.take_unreported_discards();
        shared::report_discards(
            discarded,
            |count| self.stage.handle_discarded(count),
            self.control.me.id(),
        );
    }
}

impl<S: ProducerConsumer> Receiving for ProducerConsumerRuntime<S> {
    fn input(&mut self) -> &mut ConsumerSide<S::Input> {
        &mut self.input
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

impl<S: ProducerConsumer> Emitting for ProducerConsumerRuntime<S> {
    fn output(&mut self) -> &mut ProducerSide<S::Output, S::Message> {
        &mut self.output
    }

    async fn on_consumer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        options: &SubscribeOptions,
    ) -> Result<Result<(), BoxError>, ExitReason> {
        let (stage, mut ctx) = self.parts();
        catch(stage.handle_consumer_subscribed(tag, options, &mut ctx)).await
    }

    async fn on_consumer_cancelled(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
    ) -> Result<(), ExitReason> {
        self.on_cancel(tag, reason).await
    }
}

impl<S: ProducerConsumer> Runner for ProducerConsumerRuntime<S> {
    type Kind = ProducerConsumerKind<S>;

    async fn start(&mut self) -> Result<(), StartError> {
        let (stage, mut ctx) = self.parts();
        init_outcome(guarded(stage.init(&mut ctx)).await)?;
        let initial = std::mem::take(&mut self.initial);
        shared::subscribe_initial(self, initial).await
    }

    async fn handle(&mut self, envelope: Envelope<ProducerConsumerKind<S>>) {
        match envelope {
            Envelope::Consumer(mail, ()) => match mail {
                ForConsumer::Events { tag, events } => {
                    let events = events.into_vec();
                    if self.pending.is_empty() && self.can_process() {
                        self.events(tag, events).await;
                    } else {
                        self.pending.push_back(Pending::Events(tag, events));
                    }
                }
                ForConsumer::ProducerCancelled { tag, reason } => {
                    if self.pending.is_empty() {
                        self.producer_cancelled(tag, reason);
                    } else {
                        self.pending.push_back(Pending::Cancelled(tag, reason));
                    }
                }
                ForConsumer::Request(request) => shared::consumer_request(self, request).await,
            },
            Envelope::Producer(mail, ()) => match mail {
                ForProducer::Ask { tag, demand } => {
                    // The output side records what is unmet; handling input serves it.
                    self.output.ask(tag, demand);
                }
                ForProducer::Subscribe(request) => {
                    shared::accept_consumer(self, *request).await;
                }
                ForProducer::ConsumerCancelled { tag, reason } => {
                    if self.output.remove_consumer(tag, &reason).is_some() {
                        self.consumer_gone(tag, &reason).await;
                    }
                }
                ForProducer::Request(ProducerRequest::SetDemandMode(mode)) => {
                    // Input serves the demand left once the stash is replayed.
                    for item in self.output.set_mode(mode) {
                        self.output.replay(item);
                    }
                }
                ForProducer::Request(ProducerRequest::DemandModeQuery(reply)) => {
                    let _ = reply.send(self.output.demand_mode());
                }
                ForProducer::Request(ProducerRequest::BufferedQuery(reply)) => {
                    let _ = reply.send(self.output.buffered_count());
                }
            },
            Envelope::Stage(mail) => stage_mail(self, mail).await,
        }
        // Most messages leave nothing to flush (no input held, nothing ready, nothing
        // to report): no future of the flush's own then.
        if !self.pending.is_empty()
            || !self.output.is_settled()
            || !self.input.self_cancelled.is_empty()
        {
            self.flush().await;
        }
    }

    async fn on_message(&mut self, message: S::Message) {
        let (stage, mut ctx) = self.parts();
        if let Err(reason) = guarded(stage.handle_message(message, &mut ctx)).await {
            self.fail(reason);
        }
    }

    async fn on_info(&mut self, message: S::Message) {
        if self.pending.is_empty() {
            self.output.after_buffered(Held::Info(message));
        } else {
            self.pending.push_back(Pending::Info(message));
        }
    }

    fn demands(&self, into: &mut Vec<SubscriptionDemand>) {
        self.input.demands(into);
        self.output.demands(into);
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
            self.input.begin_drain(reason);
        }
    }

    /// Nothing left to receive, and the output has gone out (or no consumer is left
    /// to take it).
    fn drained(&self) -> bool {
        self.input.is_empty()
            && self.pending.is_empty()
            && (self.output.buffered_count() == 0 || self.output.consumer_count() == 0)
    }

    fn count_unhandled(&mut self) {
        let pending: usize = self
            .pending
            .iter()
            .map(|pending| match pending {
                Pending::Events(_, events) => events.len(),
                Pending::Cancelled(..) | Pending::Info(_) => 0,
            })
            .sum();
        self.input.count_unhandled(pending);
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        run_terminate(self.stage.terminate(reason)).await;
    }

    #[inline(always)]
    fn mail_waiting(&mut self, more: impl FnOnce() -> bool) {
        if self.output.wants_mail_hints() {
            self.output.mail_waiting(more());
        }
    }

    fn set_exit_reason(&mut self, reason: &ExitReason) {
        self.output.set_exit_reason(reason);
        self.input.exit_reason = reason.clone();
    }
}
