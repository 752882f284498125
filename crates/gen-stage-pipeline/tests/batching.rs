//! Batchers: batches never exceed their size nor wait past their timeout, a batch
//! lost to its callback is delivered again, and a drain flushes partial batches.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    Batch, BatchKey, BatchOutcome, BatchTrigger, BatcherOptions, Handler, MemoryQueue, Message,
    ProcessorContext, ProcessorOptions,
};
use support::{Log, SECOND, assert_adds_up, assert_settled_once, start};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Sends every message to the batcher "out"; records each message's entry and each
/// batch; panics in the first batch holding message `panic_on` on its first attempt.
struct Recorder {
    handled: Log<(u64, Instant)>,
    batches: Log<(Vec<u64>, BatchTrigger, Instant)>,
    panic_on: Option<u64>,
    /// Sleeps past the batch processor's timeout on the batch holding this message.
    slow_on: Option<u64>,
    /// The failures handle_failed saw.
    failures: Log<String>,
    /// Woken after each handle_message.
    progress: Notify,
}

impl Recorder {
    fn new(panic_on: Option<u64>) -> Arc<Self> {
        Arc::new(Recorder {
            handled: Log::default(),
            batches: Log::default(),
            panic_on,
            slow_on: None,
            failures: Log::default(),
            progress: Notify::new(),
        })
    }

    fn slow_on(message: u64) -> Arc<Self> {
        Arc::new(Recorder {
            handled: Log::default(),
            batches: Log::default(),
            panic_on: None,
            slow_on: Some(message),
            failures: Log::default(),
            progress: Notify::new(),
        })
    }

    /// Waits until `count` messages went through handle_message.
    async fn handled_at_least(&self, count: usize) {
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.handled.len() >= count {
                return;
            }
            progress.await;
        }
    }
}

impl Handler for Recorder {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        self.handled.push((*message.data(), Instant::now()));
        message.put_batcher("out");
        self.progress.notify_waiters();
        Ok(())
    }

    async fn handle_batch(&self, batch: Batch<u64>) -> BatchOutcome<u64> {
        let panics = batch
            .messages()
            .iter()
            .any(|m| Some(*m.data()) == self.panic_on && m.metadata().attempt == 1);
        if panics {
            panic!("the sink failed");
        }
        let slow = batch
            .messages()
            .iter()
            .any(|m| Some(*m.data()) == self.slow_on && m.metadata().attempt == 1);
        if slow {
            tokio::time::sleep(60 * SECOND).await;
        }
        let data = batch.data().copied().collect();
        self.batches
            .push((data, batch.info().trigger, Instant::now()));
        batch.done()
    }

    async fn handle_failed(&self, messages: &mut [Message<u64>]) {
        for message in messages {
            let failure = message.failure().map(ToString::to_string);
            self.failures.push(failure.unwrap_or_default());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn batches_close_at_their_size_or_their_timeout_whichever_comes_first() {
    let queue = MemoryQueue::new();
    queue.extend(0..25);
    let recorder = Recorder::new(None);
    let timeout = Duration::from_millis(300);
    let pipeline = start(recorder.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(1))
            .batcher(
                "out",
                BatcherOptions::new().batch_size(10).batch_timeout(timeout),
            )
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let entered: std::collections::HashMap<u64, Instant> =
        recorder.handled.take().into_iter().collect();
    let batches = recorder.batches.take();
    let sizes: Vec<usize> = batches.iter().map(|(data, ..)| data.len()).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let triggers: Vec<BatchTrigger> = batches.iter().map(|(_, trigger, _)| *trigger).collect();
    assert_eq!(
        triggers,
        [
            BatchTrigger::Size,
            BatchTrigger::Size,
            BatchTrigger::Timeout
        ]
    );
    // The partial batch waited its timeout from its first message, and no longer.
    let (last, _, closed) = &batches[2];
    let first = entered[&last[0]];
    assert!(*closed - first >= timeout);
    assert!(
        *closed - first < timeout + Duration::from_millis(50),
        "{:?}",
        *closed - first
    );
    assert_eq!(queue.acked(), 25);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

#[tokio::test(start_paused = true)]
async fn a_delivery_larger_than_a_batch_is_cut_into_full_batches_in_order() {
    let queue = MemoryQueue::new();
    queue.extend(0..250);
    let recorder = Recorder::new(None);
    let timeout = Duration::from_millis(300);
    // One processor taking up to 1000 at once: its deliveries hold many batches.
    let pipeline = start(recorder.clone(), &queue, |b| {
        b.processors(
            ProcessorOptions::new()
                .concurrency(1)
                .max_demand(1000)
                .min_demand(0),
        )
        .batcher(
            "out",
            BatcherOptions::new().batch_size(7).batch_timeout(timeout),
        )
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let batches = recorder.batches.take();
    // Never past the size; full batches close at once, only the last one waits.
    let (last, full) = batches.split_last().expect("batches");
    for (data, trigger, _) in full {
        assert_eq!((data.len(), *trigger), (7, BatchTrigger::Size), "{data:?}");
    }
    assert_eq!((last.0.len(), last.1), (250 % 7, BatchTrigger::Timeout));
    let all: Vec<u64> = batches.iter().flat_map(|(data, ..)| data.clone()).collect();
    assert_eq!(all, (0..250).collect::<Vec<_>>(), "in order, each once");
    assert_eq!(queue.acked(), 250);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Panics on the batch holding message 3, or sleeps past the timeout on it, on the
/// batch's first attempt.
async fn a_batch_whose_callback_fails(
    sleeps: bool,
) -> (
    gen_stage_pipeline::PipelineReport,
    MemoryQueue<u64>,
    Arc<Recorder>,
) {
    let queue = MemoryQueue::new();
    queue.extend(0..20);
    let recorder = if sleeps {
        Recorder::slow_on(3)
    } else {
        Recorder::new(Some(3))
    };
    let pipeline = start(recorder.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(2))
            .batcher(
                "out",
                BatcherOptions::new()
                    .batch_size(5)
                    .batch_timeout(SECOND)
                    .timeout(SECOND),
            )
            .retry(gen_stage_pipeline::RetryPolicy::new().first_delay(SECOND))
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;
    (report, queue, recorder)
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_handle_batch_fails_its_messages_which_are_retried() {
    let (report, queue, recorder) = a_batch_whose_callback_fails(false).await;
    // The batch holding 3 failed with the panic: its messages were retried, came
    // back, and went through on their second attempt; nothing was dropped.
    assert_eq!(queue.acked(), 20);
    let retried = report.settled.retried;
    assert!((1..=5).contains(&retried), "{report:?}");
    assert_eq!(report.dropped_handles, 0);
    assert_eq!(report.taken_in, 20 + retried);
    let written: usize = recorder
        .batches
        .take()
        .iter()
        .map(|(data, ..)| data.len())
        .sum();
    assert_eq!(written, 20, "every message written once");
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

#[tokio::test(start_paused = true)]
async fn a_handle_batch_past_its_timeout_fails_its_messages_with_the_reason() {
    let (report, queue, recorder) = a_batch_whose_callback_fails(true).await;
    let failures = recorder.failures.take();
    assert!(!failures.is_empty(), "{report:?}");
    assert!(
        failures
            .iter()
            .all(|f| f == "handle_batch did not finish within 1s"),
        "{failures:?}"
    );
    assert_eq!(queue.acked(), 20);
    assert_eq!(report.settled.retried, failures.len() as u64);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

#[tokio::test(start_paused = true)]
async fn a_drain_flushes_partial_batches_and_acks_them() {
    let queue = MemoryQueue::new();
    queue.extend(0..30);
    let recorder = Recorder::new(None);
    let pipeline = start(recorder.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(2))
            // Neither the size nor the timeout closes a batch in this test.
            .batcher(
                "out",
                BatcherOptions::new()
                    .batch_size(100)
                    .batch_timeout(3600 * SECOND),
            )
    })
    .await;
    recorder.handled_at_least(30).await;
    assert!(recorder.batches.take().is_empty());
    let report = pipeline.drain(5 * SECOND).await;

    let batches = recorder.batches.take();
    assert!(
        batches
            .iter()
            .all(|(_, trigger, _)| *trigger == BatchTrigger::Flush)
    );
    assert_eq!(
        batches.iter().map(|(data, ..)| data.len()).sum::<usize>(),
        30
    );
    assert_eq!(report.settled.acked, 30);
    assert_eq!(queue.acked(), 30);
    assert!(!report.deadline_reached);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Data `key * 1000 + weight`: batched by key, weighed by weight; records batches.
struct Keyed {
    batches: Log<(Option<u64>, Vec<u64>, BatchTrigger, Instant)>,
}

impl Handler for Keyed {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let data = *message.data();
        message.put_batch_key(data / 1000);
        message.set_batch_weight((data % 1000) as u32);
        message.put_batcher("out");
        Ok(())
    }

    async fn handle_batch(&self, batch: Batch<u64>) -> BatchOutcome<u64> {
        let key = batch.info().batch_key.as_ref().map(|key| match key {
            BatchKey::Number(number) => *number,
            BatchKey::Text(_) => unreachable!("numbers only"),
        });
        let data = batch.data().copied().collect();
        self.batches
            .push((key, data, batch.info().trigger, Instant::now()));
        batch.done()
    }
}

fn keyed() -> Arc<Keyed> {
    Arc::new(Keyed {
        batches: Log::default(),
    })
}

#[tokio::test(start_paused = true)]
async fn weights_never_take_a_batch_past_its_size_and_a_heavy_message_goes_alone() {
    let queue = MemoryQueue::new();
    // Key 0, weights 4 4 4 20 3 3 3 3, against a size of 10.
    queue.extend([4, 4, 4, 20, 3, 3, 3, 3]);
    let handler = keyed();
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(1).max_demand(20))
            .batcher(
                "out",
                BatcherOptions::new().batch_size(10).batch_timeout(SECOND),
            )
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let batches: Vec<(Vec<u64>, BatchTrigger)> = handler
        .batches
        .take()
        .into_iter()
        .map(|(_, data, trigger, _)| (data, trigger))
        .collect();
    assert_eq!(
        batches,
        [
            (vec![4, 4], BatchTrigger::Size),
            (vec![4], BatchTrigger::Size),
            (vec![20], BatchTrigger::Size),
            (vec![3, 3, 3], BatchTrigger::Size),
            (vec![3], BatchTrigger::Timeout),
        ]
    );
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_batch_and_its_own_timeout() {
    let queue = MemoryQueue::new();
    let handler = keyed();
    let timeout = SECOND;
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(2))
            .batcher(
                "out",
                BatcherOptions::new().batch_size(3).batch_timeout(timeout),
            )
    })
    .await;
    let began = Instant::now();
    // Key 1: five messages at once (a full batch, then two). Key 2: one message, 600 ms
    // later.
    queue.extend([1001, 1001, 1001, 1001, 1001]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    queue.push(2001);
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let mut batches = handler.batches.take();
    batches.sort_by_key(|(_, _, _, at)| *at);
    let summary: Vec<(Option<u64>, usize, BatchTrigger, Duration)> = batches
        .iter()
        .map(|(key, data, trigger, at)| (*key, data.len(), *trigger, *at - began))
        .collect();
    assert_eq!(
        summary,
        [
            (Some(1), 3, BatchTrigger::Size, Duration::ZERO),
            (Some(1), 2, BatchTrigger::Timeout, timeout),
            (
                Some(2),
                1,
                BatchTrigger::Timeout,
                timeout + Duration::from_millis(600)
            ),
        ]
    );
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

#[tokio::test(start_paused = true)]
async fn at_the_bound_of_open_keys_the_oldest_batch_is_closed() {
    let queue = MemoryQueue::new();
    let handler = keyed();
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(1))
            .batcher(
                "out",
                BatcherOptions::new()
                    .batch_size(10)
                    .batch_timeout(60 * SECOND)
                    .max_open_keys(2),
            )
    })
    .await;
    for key in 1..=3 {
        queue.push(key * 1000 + 1);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let batches: Vec<(Option<u64>, BatchTrigger)> = handler
        .batches
        .take()
        .into_iter()
        .map(|(key, _, trigger, _)| (key, trigger))
        .collect();
    assert_eq!(
        batches,
        [
            (Some(1), BatchTrigger::KeyLimit),
            (Some(2), BatchTrigger::Timeout),
            (Some(3), BatchTrigger::Timeout),
        ]
    );
    assert_adds_up(&report);
    assert_settled_once(&queue);
}
