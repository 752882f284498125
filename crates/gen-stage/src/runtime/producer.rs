//! The loop of a [`Producer`] stage.

use crate::context::{Context, NoInlet};
use crate::error::StartError;
use crate::exit::{BoxError, CancelReason, ExitReason};
use crate::kind::ProducerKind;
use crate::options::SubscribeOptions;
use crate::runtime::control::Control;
use crate::runtime::producer_side::Held;
use crate::runtime::shared::{self, Emitting};
use crate::runtime::{
    ProducerSide, Runner, catch, guarded, init_outcome, run_terminate, stage_mail,
};
use crate::stage::Producer;
use crate::stats::SubscriptionDemand;
use crate::subscription::SubscriptionTag;
use crate::wire::{Envelope, ForProducer, ProducerRequest};

pub(crate) struct ProducerRuntime<S: Producer> {
    stage: S,
    side: ProducerSide<S::Event, S::Message>,
    control: Control<ProducerKind<S>>,
    /// A producer receives nothing: its context's inlet.
    no_inlet: NoInlet,
}

impl<S: Producer> ProducerRuntime<S> {
    pub(crate) fn new(
        stage: S,
        side: ProducerSide<S::Event, S::Message>,
        control: Control<ProducerKind<S>>,
    ) -> Self {
        ProducerRuntime {
            stage,
            side,
            control,
            no_inlet: NoInlet,
        }
    }

    fn parts(&mut self) -> (&mut S, Context<'_, ProducerKind<S>>) {
        let context = Context::new(&mut self.control, &mut self.side, &mut self.no_inlet);
        (&mut self.stage, context)
    }

    fn fail(&mut self, reason: ExitReason) {
        self.control.stop = Some(reason);
    }

    /// Calls `handle_demand` for demand the buffer could not serve.
    async fn produce(&mut self, demand: usize) {
        // A draining producer produces nothing more: its buffer goes out, then it stops.
        if demand == 0 || self.control.stop.is_some() || self.control.draining.is_some() {
            return;
        }
        let (stage, mut ctx) = self.parts();
        // A hot hook: its panic unwinds to the stage loop's catch (see `drive`).
        match stage.handle_demand(demand, &mut ctx).await {
            Ok(events) => self.side.emit(events),
            Err(error) => self.fail(ExitReason::error(error)),
        }
    }

    /// A consumer left (or was cancelled): `handle_cancel` runs, then the demand its
    /// leaving freed upstream is produced.
    async fn consumer_gone(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        upstream: usize,
    ) {
        if let Err(failure) = self.on_consumer_cancelled(tag, reason).await {
            self.fail(failure);
        }
        self.produce(upstream).await;
    }

    /// Delivers ready info messages and reports discards.
    async fn flush(&mut self) {
        while self.control.stop.is_none() {
            // Demand a dispatcher created on its own (a broadcast filter, for example).
            let extra = self.side.take_extra_upstream();
            if extra > 0 {
                self.produce(extra).await;
            } else if self.side.has_ready() {
                for held in self.side.take_ready() {
                    match held {
                        Held::Info(message) => self.on_message(message).await,
                        // A producer subscribes to nothing: nothing of it is cancelled.
                        Held::Cancelled(..) => {}
                        Held::CancelConsumer(tag, reason) => {
                            if let Some(upstream) = self.side.remove_consumer(tag, &reason) {
                                self.consumer_gone(tag, &reason, upstream).await;
                            }
                        }
                        Held::ConsumerRemoved(tag, reason, upstream) => {
                            self.consumer_gone(tag, &reason, upstream).await;
                        }
                    }
                }
            } else {
                break;
            }
        }
        let discarded = self.side.take_unreported_discards();
        shared::report_discards(
            discarded,
            |count| self.stage.handle_discarded(count),
            self.control.me.id(),
        );
    }
}

impl<S: Producer> Emitting for ProducerRuntime<S> {
    fn output(&mut self) -> &mut ProducerSide<S::Event, S::Message> {
        &mut self.side
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
        let (stage, mut ctx) = self.parts();
        guarded(stage.handle_cancel(tag, reason, &mut ctx)).await
    }
}

impl<S: Producer> Runner for ProducerRuntime<S> {
    type Kind = ProducerKind<S>;

    async fn start(&mut self) -> Result<(), StartError> {
        let (stage, mut ctx) = self.parts();
        init_outcome(guarded(stage.init(&mut ctx)).await)
    }

    async fn handle(&mut self, envelope: Envelope<ProducerKind<S>>) {
        // A producer has no consumer half: no mail can be addressed to one.
        match envelope {
            // Handled in place: a future of its own cost a drop per message.
            Envelope::Producer(mail, ()) => match mail {
                ForProducer::Ask { tag, demand } => {
                    let upstream = self.side.ask(tag, demand);
                    self.produce(upstream).await;
                }
                ForProducer::Subscribe(request) => {
                    let upstream = shared::accept_consumer(self, *request).await;
                    self.produce(upstream).await;
                }
                ForProducer::ConsumerCancelled { tag, reason } => {
                    if let Some(upstream) = self.side.remove_consumer(tag, &reason) {
                        self.consumer_gone(tag, &reason, upstream).await;
                    }
                }
                ForProducer::Request(ProducerRequest::SetDemandMode(mode)) => {
                    for item in self.side.set_mode(mode) {
                        let upstream = self.side.replay(item);
                        self.produce(upstream).await;
                    }
                }
                ForProducer::Request(ProducerRequest::DemandModeQuery(reply)) => {
                    let _ = reply.send(self.side.demand_mode());
                }
                ForProducer::Request(ProducerRequest::BufferedQuery(reply)) => {
                    let _ = reply.send(self.side.buffered_count());
                }
            },
            Envelope::Stage(mail) => stage_mail(self, mail).await,
        }
        // Most messages leave nothing to flush: no future of the flush's own then.
        if !self.side.is_settled() {
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
        self.side.after_buffered(Held::Info(message));
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

    /// A producer subscribes to nothing: no producer of its can end.
    async fn urgent_cancels(&mut self, _urgent: Vec<(SubscriptionTag, CancelReason)>) {}

    /// Nothing to cancel: `produce` stops calling `handle_demand` while draining.
    /// The stage's `prepare_for_draining` runs; what it emits goes out as the buffer
    /// does.
    async fn begin_drain(&mut self) {
        let (stage, mut ctx) = self.parts();
        if let Err(reason) = guarded(stage.prepare_for_draining(&mut ctx)).await {
            self.fail(reason);
        }
        self.flush().await;
    }

    fn drained(&self) -> bool {
        self.side.buffered_count() == 0 || self.side.consumer_count() == 0
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        run_terminate(self.stage.terminate(reason)).await;
    }

    #[inline(always)]
    fn mail_waiting(&mut self, more: impl FnOnce() -> bool) {
        if self.side.wants_mail_hints() {
            self.side.mail_waiting(more());
        }
    }

    fn set_exit_reason(&mut self, reason: &ExitReason) {
        self.side.set_exit_reason(reason);
    }
}
