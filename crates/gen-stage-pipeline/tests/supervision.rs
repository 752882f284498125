//! A producer that fails is restarted alone and the processors take from the new one;
//! past the restart budget the pipeline stops, and says why.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gen_stage::{BoxError, ExitReason, Producer, ProducerContext};
use gen_stage_pipeline::{
    AckError, AckGroup, AckTag, Acknowledger, Message, Outcome, Pipeline, ProcessorOptions, Settled,
};
use support::{Accept, SECOND, assert_adds_up};
use tokio::sync::Notify;

/// Records the outcomes it is told, by tag.
#[derive(Default)]
struct Outcomes {
    told: Mutex<Vec<(u64, Outcome)>>,
    changed: Notify,
}

impl Outcomes {
    fn acked(&self) -> usize {
        let told = self.told.lock().expect("not poisoned");
        told.iter()
            .filter(|(_, outcome)| *outcome == Outcome::Ack)
            .count()
    }
}

impl Acknowledger for Outcomes {
    async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
        let mut told = self.told.lock().map_err(|_| AckError::new("poisoned"))?;
        told.extend(settled.iter().map(|s| (s.tag.0, s.outcome)));
        self.changed.notify_one();
        Ok(())
    }
}

/// Numbered messages, shared across incarnations; each incarnation fails on its
/// `fail_at`-th call of `handle_demand` (never if 0).
struct Flaky {
    next: Arc<AtomicU64>,
    group: Arc<AckGroup>,
    calls: u32,
    fail_at: u32,
}

impl Producer for Flaky {
    type Event = Message<u64>;
    type Message = ();

    async fn handle_demand(
        &mut self,
        demand: usize,
        _: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<Message<u64>>, BoxError> {
        self.calls += 1;
        if self.calls == self.fail_at {
            return Err("the connection broke".into());
        }
        let first = self.next.fetch_add(demand as u64, Ordering::SeqCst);
        Ok((first..first + demand as u64)
            .map(|n| Message::new(n, self.group.handle(AckTag(n))))
            .collect())
    }
}

/// A factory of `Flaky` producers: the first `failing` incarnations fail at their
/// `fail_at`-th call.
fn flaky(
    outcomes: &Arc<Outcomes>,
    failing: u32,
    fail_at: u32,
) -> (impl Fn() -> Flaky + Send + Sync + 'static, Arc<AtomicU32>) {
    let group = AckGroup::new(outcomes.clone());
    let next = Arc::new(AtomicU64::new(0));
    let incarnations = Arc::new(AtomicU32::new(0));
    let counted = incarnations.clone();
    let make = move || {
        let incarnation = counted.fetch_add(1, Ordering::SeqCst);
        Flaky {
            next: next.clone(),
            group: group.clone(),
            calls: 0,
            fail_at: if incarnation < failing { fail_at } else { 0 },
        }
    };
    (make, incarnations)
}

#[tokio::test(start_paused = true)]
async fn a_failed_producer_is_restarted_and_the_processors_take_from_the_new_one() {
    let outcomes = Arc::new(Outcomes::default());
    let (make, incarnations) = flaky(&outcomes, 1, 3);
    let pipeline = Pipeline::builder(Accept)
        .producer(make)
        .processors(ProcessorOptions::new().concurrency(2).max_demand(10))
        .start()
        .await
        .expect("starts");
    while outcomes.acked() < 200 {
        outcomes.changed.notified().await;
    }
    let report = pipeline.drain(5 * SECOND).await;

    assert_eq!(incarnations.load(Ordering::SeqCst), 2, "restarted once");
    assert_eq!(pipeline.failure(), None);
    // Each message was told one outcome, never two; the second incarnation's were
    // handled (the processors subscribed to it).
    let told = outcomes.told.lock().expect("not poisoned").clone();
    let mut by_tag: HashMap<u64, usize> = HashMap::new();
    for (tag, _) in &told {
        *by_tag.entry(*tag).or_default() += 1;
    }
    assert!(
        by_tag.values().all(|&count| count == 1),
        "a message told twice"
    );
    assert!(
        told.iter()
            .any(|(tag, outcome)| *tag >= 100 && *outcome == Outcome::Ack)
    );
    assert_adds_up(&report);
}

#[tokio::test(start_paused = true)]
async fn past_the_restart_budget_the_pipeline_stops_and_says_why() {
    let outcomes = Arc::new(Outcomes::default());
    // Every incarnation fails at its first call.
    let (make, incarnations) = flaky(&outcomes, u32::MAX, 1);
    let pipeline = Pipeline::builder(Accept)
        .producer(make)
        .processors(ProcessorOptions::new().concurrency(1))
        .max_restarts(2, 5 * SECOND)
        .start()
        .await
        .expect("starts");
    let reason = pipeline.failed().await;
    assert!(matches!(reason, ExitReason::Error(_)), "{reason:?}");
    assert_eq!(pipeline.failure(), Some(reason));
    assert_eq!(
        incarnations.load(Ordering::SeqCst),
        3,
        "the first, and two restarts"
    );
    let report = pipeline.drain(SECOND).await;
    assert_adds_up(&report);
    assert!(
        pipeline
            .snapshot()
            .stages
            .iter()
            .all(|stage| stage.state == gen_stage::stats::StageState::Stopped)
    );
}

/// Never finishes message 0 (and says when it is there); handles the others.
struct StuckOnZero(Arc<Notify>);

impl gen_stage_pipeline::Handler for StuckOnZero {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &gen_stage_pipeline::ProcessorContext,
    ) -> Result<(), BoxError> {
        if *message.data() == 0 {
            self.0.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn under_a_supervisor_the_shutdown_is_a_drain_bounded_by_the_childs_time() {
    use gen_stage::supervision::{Shutdown, Supervisor};
    use gen_stage_pipeline::{MemoryQueue, PipelineSlot};

    let queue = MemoryQueue::new();
    queue.extend(0..50);
    let slot = PipelineSlot::new();
    let source = queue.clone();
    let reached = Arc::new(Notify::new());
    let stuck = reached.clone();
    let child = Pipeline::child_spec("orders", slot.clone(), move || {
        let source = source.clone();
        Pipeline::builder(StuckOnZero(stuck.clone()))
            .producer(move || source.producer())
            .processors(ProcessorOptions::new().concurrency(2).max_demand(5))
    })
    .shutdown(Shutdown::Graceful(3 * SECOND));
    let supervisor = Supervisor::new()
        .child(child)
        .start()
        .await
        .expect("starts");
    let pipeline = slot.get().expect("started");
    reached.notified().await;
    let began = tokio::time::Instant::now();
    supervisor.stop(ExitReason::Shutdown).await.expect("stops");
    // The drain could not finish (0 never does): the child's time cut it short.
    let took = tokio::time::Instant::now() - began;
    assert!(took >= 3 * SECOND && took < 10 * SECOND, "{took:?}");
    assert_eq!(pipeline.stopped().await, ExitReason::Shutdown);
    let report = pipeline.counts();
    assert_adds_up(&report);
    assert!(report.settled.released >= 1, "{report:?}");
    assert_eq!(queue.in_flight(), 0);
    assert_eq!(queue.stray_outcomes(), 0);
}
