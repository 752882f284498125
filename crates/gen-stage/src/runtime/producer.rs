//! The loop of a [`Producer`] stage.

use crate::context::{Context, Control};
use crate::error::{StartError, SubscribeError};
use crate::exit::{CancelReason, ExitReason, SharedError};
use crate::kind::ProducerKind;
use crate::protocol::Envelope;
use crate::runtime::{ProducerSide, Runner, answer, catch, guarded, init_outcome};
use crate::stage::Producer;

pub(crate) struct ProducerRuntime<S: Producer> {
    stage: S,
    side: ProducerSide<S::Event, S::Message>,
    control: Control<ProducerKind<S>>,
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
        }
    }

    fn parts(&mut self) -> (&mut S, Context<'_, ProducerKind<S>>) {
        let context = Context {
            producer: Some(&mut self.side),
            consumer: None,
            control: &mut self.control,
        };
        (&mut self.stage, context)
    }

    fn fail(&mut self, reason: ExitReason) {
        self.control.stop = Some(reason);
    }

    /// Calls `handle_demand` for demand the buffer could not serve.
    async fn produce(&mut self, demand: usize) {
        if demand == 0 || self.control.stop.is_some() {
            return;
        }
        let (stage, mut ctx) = self.parts();
        match guarded(stage.handle_demand(demand, &mut ctx)).await {
            Ok(events) => self.side.emit(events),
            Err(reason) => self.fail(reason),
        }
    }

    async fn message(&mut self, message: S::Message) {
        let (stage, mut ctx) = self.parts();
        if let Err(reason) = guarded(stage.handle_message(message, &mut ctx)).await {
            self.fail(reason);
        }
    }

    async fn cancelled(&mut self, tag: crate::SubscriptionTag, reason: CancelReason) {
        let Some(upstream) = self.side.remove_consumer(tag) else {
            return;
        };
        let (stage, mut ctx) = self.parts();
        if let Err(reason) = guarded(stage.handle_cancel(tag, &reason, &mut ctx)).await {
            self.fail(reason);
        }
        self.produce(upstream).await;
    }

    /// Delivers ready info messages and reports discards.
    async fn flush(&mut self) {
        while !self.side.ready_infos.is_empty() && self.control.stop.is_none() {
            let infos = std::mem::take(&mut self.side.ready_infos);
            for info in infos {
                self.message(info).await;
            }
        }
        let discarded = std::mem::take(&mut self.side.unreported_discards);
        if discarded > 0 && self.stage.handle_discarded(discarded) {
            tracing::warn!(
                "producer {} discarded {discarded} events from its buffer",
                self.control.me.id()
            );
        }
    }
}

impl<S: Producer> Runner for ProducerRuntime<S> {
    type Kind = ProducerKind<S>;

    async fn start(&mut self) -> Result<(), StartError> {
        let (stage, mut ctx) = self.parts();
        init_outcome(guarded(stage.init(&mut ctx)).await)
    }

    async fn handle(&mut self, envelope: Envelope<ProducerKind<S>>) {
        match envelope {
            Envelope::Ask { tag, demand } => {
                let upstream = self.side.ask(tag, demand);
                self.produce(upstream).await;
            }
            Envelope::Subscribe {
                tag,
                sink,
                options,
                reply,
            } => {
                if !self.side.add_consumer(tag, sink) {
                    return;
                }
                let (stage, mut ctx) = self.parts();
                match catch(stage.handle_consumer_subscribed(tag, &options, &mut ctx)).await {
                    Err(panic) => {
                        self.side.reject(tag, CancelReason::Down(panic.clone()));
                        answer(reply, Err(SubscribeError::ProducerNotAlive));
                        self.fail(panic);
                    }
                    Ok(Err(error)) => {
                        let error = SharedError::from(error);
                        self.side.reject(tag, CancelReason::Rejected(error.clone()));
                        answer(reply, Err(SubscribeError::Rejected(error)));
                    }
                    Ok(Ok(())) => match self.side.accept(tag, &options) {
                        Ok(upstream) => {
                            answer(reply, Ok(tag));
                            self.produce(upstream).await;
                        }
                        Err(error) => answer(reply, Err(SubscribeError::Rejected(error))),
                    },
                }
            }
            Envelope::ConsumerCancelled { tag, reason } => self.cancelled(tag, reason).await,
            Envelope::Message(message) => self.message(message).await,
            Envelope::Info { message, queued } => {
                self.side.store_info(message);
                if let Some(queued) = queued {
                    let _ = queued.send(());
                }
            }
            Envelope::SetDemandMode(mode) => {
                for upstream in self.side.set_mode(mode) {
                    self.produce(upstream).await;
                }
            }
            Envelope::DemandModeQuery(reply) => {
                let _ = reply.send(self.side.demand_mode());
            }
            Envelope::BufferedQuery(reply) => {
                let _ = reply.send(self.side.buffered_count());
            }
            Envelope::Stop(reason) => self.fail(reason),
            // A producer has no producers: these cannot be addressed to it.
            Envelope::Events { .. }
            | Envelope::ProducerCancelled { .. }
            | Envelope::SubscribeTo { .. }
            | Envelope::Cancel { .. }
            | Envelope::AskManual { .. } => {}
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
