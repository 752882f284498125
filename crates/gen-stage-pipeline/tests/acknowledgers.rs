//! Acknowledgers: outcomes reach them in groups; their failures are counted and stop
//! nothing; a log-based source commits only a contiguous watermark; a message dropped
//! before it entered a pipeline is released to its source.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use gen_stage::BoxError;
use gen_stage::source::{IterSource, SourceProducer};
use gen_stage_pipeline::{
    AckError, AckGroup, AckTag, Acknowledger, Handler, Message, Outcome, Pipeline,
    ProcessorContext, ProcessorOptions, RetryPolicy, Settled,
};
use support::{Log, SECOND, assert_adds_up};
use tokio::sync::Notify;

/// Records every call, and fails the calls that settle a message whose tag is in
/// `fail_tags`.
#[derive(Default)]
struct Recording {
    calls: Log<Vec<(u64, Outcome)>>,
    fail_tags: Vec<u64>,
    called: Notify,
}

impl Acknowledger for Recording {
    async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
        let call: Vec<(u64, Outcome)> = settled.iter().map(|s| (s.tag.0, s.outcome)).collect();
        let fails = call.iter().any(|(tag, _)| self.fail_tags.contains(tag));
        self.calls.push(call);
        self.called.notify_waiters();
        self.called.notify_one();
        if fails {
            return Err(AckError::new("the connection went down"));
        }
        Ok(())
    }
}

/// Fails odd numbers.
struct FailOdd;

impl Handler for FailOdd {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        if *message.data() % 2 == 1 {
            return Err("odd".into());
        }
        Ok(())
    }
}

/// Messages 0..count of `group`, tagged with their number, from an iterator.
fn messages_of(
    group: &Arc<AckGroup>,
    count: u64,
) -> impl Fn() -> SourceProducer<IterSource<std::vec::IntoIter<Message<u64>>>> + Send + Sync + 'static
{
    let group = group.clone();
    move || {
        let messages: Vec<Message<u64>> = (0..count)
            .map(|n| Message::new(n, group.handle(AckTag(n))))
            .collect();
        SourceProducer::new(IterSource::new(messages.into_iter()))
    }
}

#[tokio::test(start_paused = true)]
async fn ack_failures_are_counted_per_outcome_and_the_pipeline_goes_on() {
    let recording = Arc::new(Recording {
        fail_tags: vec![4, 5],
        ..Recording::default()
    });
    let group = AckGroup::new(recording.clone());
    let pipeline = Pipeline::builder(FailOdd)
        .producer(messages_of(&group, 10))
        // One processor, one message per delivery: one call per message.
        .processors(
            ProcessorOptions::new()
                .concurrency(1)
                .max_demand(1)
                .min_demand(0),
        )
        .retry(RetryPolicy::new().max_attempts(1))
        .start()
        .await
        .expect("starts");
    while recording.calls.take().iter().map(Vec::len).sum::<usize>() < 10 {
        recording.called.notified().await;
    }
    let report = pipeline.drain(10 * SECOND).await;

    let calls = recording.calls.take();
    let mut settled: Vec<(u64, Outcome)> = calls.iter().flatten().copied().collect();
    settled.sort_by_key(|(tag, _)| *tag);
    let expected: Vec<(u64, Outcome)> = (0..10)
        .map(|n| {
            (
                n,
                if n % 2 == 0 {
                    Outcome::Ack
                } else {
                    Outcome::Reject
                },
            )
        })
        .collect();
    assert_eq!(
        settled, expected,
        "each message settled once, in its outcome"
    );
    assert_eq!(calls.iter().map(Vec::len).sum::<usize>(), 10);
    // 4 (an ack) and 5 (a reject) failed to be told: counted, nothing stopped.
    assert_eq!(report.ack_failures.acked, 1);
    assert_eq!(report.ack_failures.rejected, 1);
    assert_eq!(report.ack_failures.total(), 2);
    assert_eq!(report.settled.acked, 5);
    assert_eq!(report.settled.rejected, 5);
    assert_adds_up(&report);
}

/// A log-based source's acknowledger (Kafka offsets, MQTT's in-order PUBACKs): acks
/// may come in any order, but only the contiguous prefix is committed; an ack beyond
/// a gap is held until the gap closes.
#[derive(Default)]
struct Watermark {
    state: Mutex<WatermarkState>,
    changed: Notify,
}

impl Watermark {
    fn committed(&self) -> u64 {
        self.state.lock().expect("not poisoned").committed
    }
}

#[derive(Default)]
struct WatermarkState {
    /// Every tag below it is committed.
    committed: u64,
    /// Acked beyond a gap, not yet committed.
    held: BTreeSet<u64>,
    /// The most acks held at once.
    most_held: usize,
    /// Each commit, in order: the watermark it moved to.
    commits: Vec<u64>,
}

impl Acknowledger for Watermark {
    async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
        self.changed.notify_one();
        let mut state = self.state.lock().map_err(|_| AckError::new("poisoned"))?;
        for Settled { tag, .. } in settled {
            state.held.insert(tag.0);
        }
        state.most_held = state.most_held.max(state.held.len());
        let before = state.committed;
        loop {
            let next = state.committed;
            if !state.held.remove(&next) {
                break;
            }
            state.committed += 1;
        }
        if state.committed > before {
            let committed = state.committed;
            state.commits.push(committed);
        }
        Ok(())
    }
}

/// Makes message 0 the slowest by far, so that every other ack overtakes it.
struct ZeroIsSlow;

impl Handler for ZeroIsSlow {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        if *message.data() == 0 {
            tokio::time::sleep(5 * SECOND).await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_watermark_acknowledger_holds_acks_beyond_a_gap_until_it_closes() {
    let watermark = Arc::new(Watermark::default());
    let group = AckGroup::new(watermark.clone());
    let pipeline = Pipeline::builder(ZeroIsSlow)
        .producer(messages_of(&group, 100))
        .processors(ProcessorOptions::new().concurrency(4).max_demand(5))
        .start()
        .await
        .expect("starts");
    while watermark.committed() < 100 {
        watermark.changed.notified().await;
    }
    let report = pipeline.drain(60 * SECOND).await;
    assert_eq!(report.settled.acked, 100);

    let state = watermark.state.lock().expect("not poisoned");
    // Acks beyond 0 were held while 0 ran; the watermark never skipped it, and
    // reached the end once it was acked.
    assert!(state.most_held > 0);
    assert_eq!(state.commits.last(), Some(&100));
    assert!(state.commits.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(state.held.is_empty());
}

#[tokio::test]
async fn a_message_dropped_outside_a_pipeline_is_released_to_its_source() {
    let recording = Arc::new(Recording::default());
    let group = AckGroup::new(recording.clone());
    let called = recording.called.notified();
    tokio::pin!(called);
    called.as_mut().enable();
    drop(Message::new(7_u64, group.handle(AckTag(7))));
    called.await;
    assert_eq!(recording.calls.take(), [vec![(7, Outcome::Release)]]);

    // A handle given up with `into_tag` settles nothing.
    let (_, _, handle) = Message::new(8_u64, group.handle(AckTag(8))).into_parts();
    assert_eq!(handle.into_tag(), AckTag(8));
    tokio::task::yield_now().await;
    assert_eq!(recording.calls.len(), 1);
}

/// Records the pipeline's demand as a producer sees it, and produces nothing.
struct Sizing {
    view: gen_stage_pipeline::DemandView,
    seen: Arc<Mutex<Vec<(usize, usize)>>>,
    asked: Arc<Notify>,
}

impl gen_stage::Producer for Sizing {
    type Event = Message<u64>;
    type Message = ();

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _: &mut gen_stage::ProducerContext<'_, Self>,
    ) -> Result<Vec<Message<u64>>, BoxError> {
        let seen = (self.view.budget(), self.view.outstanding());
        self.seen.lock().map_err(|_| "poisoned")?.push(seen);
        self.asked.notify_one();
        Ok(Vec::new())
    }
}

#[tokio::test(start_paused = true)]
async fn a_producer_reads_the_pipelines_demand_to_size_its_prefetch() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let asked = Arc::new(Notify::new());
    let (record, wake) = (seen.clone(), asked.clone());
    let view_slot = Arc::new(Mutex::new(None));
    let keep = view_slot.clone();
    let pipeline = Pipeline::builder(FailOdd)
        .producer_with_demand(move |view| {
            *keep.lock().expect("not poisoned") = Some(view.clone());
            Sizing {
                view: view.clone(),
                seen: record.clone(),
                asked: wake.clone(),
            }
        })
        .processors(ProcessorOptions::new().concurrency(3).max_demand(7))
        .start()
        .await
        .expect("starts");
    // Nothing comes: each of the three processors asks once, and its ask stays
    // outstanding.
    while seen.lock().expect("not poisoned").len() < 3 {
        asked.notified().await;
    }
    let seen = seen.lock().expect("not poisoned").clone();
    assert!(seen.iter().all(|(budget, _)| *budget == 21), "{seen:?}");
    assert!(
        seen.iter().all(|(_, outstanding)| *outstanding <= 21),
        "{seen:?}"
    );
    let view = view_slot
        .lock()
        .expect("not poisoned")
        .clone()
        .expect("made");
    assert_eq!(view.outstanding(), 21, "three processors, 7 each");
    pipeline.drain(SECOND).await;
}
