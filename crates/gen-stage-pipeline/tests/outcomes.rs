//! Every message ends in exactly one outcome: acked after its callbacks succeed,
//! retried with backoff and then rejected when they fail, whatever the way they fail.
//! The queue (the broker of these tests) is the witness.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    Batch, BatchOutcome, BatcherOptions, Callback, Failure, Handler, MemoryQueue, Message, Outcome,
    ProcessorContext, ProcessorOptions, RetryPolicy,
};
use support::{Accept, Log, SECOND, assert_adds_up, assert_settled_once, start};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn every_message_is_acked_once_without_batchers() {
    let queue = MemoryQueue::new();
    queue.extend(0..1000);
    let pipeline = start(Accept, &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(4))
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;
    assert_eq!(queue.acked(), 1000);
    assert_eq!(report.taken_in, 1000);
    assert_eq!(report.settled.acked, 1000);
    assert_adds_up(&report);
    assert_settled_once(&queue);
    assert!(!report.deadline_reached);
}

/// Fails the messages whose data is in `bad`, and records each call.
struct FailSome {
    bad: Vec<u64>,
    calls: Log<(u64, u32, Instant)>,
}

impl Handler for FailSome {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let data = *message.data();
        self.calls
            .push((data, message.metadata().attempt, Instant::now()));
        if self.bad.contains(&data) {
            return Err(format!("{data} is bad").into());
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_message_is_retried_with_growing_delays_then_rejected() {
    let queue = MemoryQueue::new();
    queue.extend(0..10);
    let handler = Arc::new(FailSome {
        bad: vec![4],
        calls: Log::default(),
    });
    let policy = RetryPolicy::new()
        .max_attempts(3)
        .first_delay(SECOND)
        .no_jitter();
    let pipeline = start(handler.clone(), &queue, |b| b.retry(policy)).await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let attempts: Vec<(u32, Instant)> = handler
        .calls
        .take()
        .into_iter()
        .filter(|(data, ..)| *data == 4)
        .map(|(_, attempt, at)| (attempt, at))
        .collect();
    assert_eq!(
        attempts.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(attempts[1].1 - attempts[0].1 >= SECOND);
    assert!(attempts[2].1 - attempts[1].1 >= 2 * SECOND);

    assert_eq!(queue.acked(), 9);
    let dead = queue.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].data, dead[0].attempts), (4, 3));
    assert!(matches!(&dead[0].failure, Some(Failure::Error(e)) if e.to_string() == "4 is bad"));
    assert_eq!(report.settled.retried, 2);
    assert_eq!(report.settled.rejected, 1);
    assert_eq!(report.taken_in, 12, "10 messages and 2 redeliveries");
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Panics on message 5, sleeps past the timeout on message 6 (first attempt only).
struct Misbehave;

impl Handler for Misbehave {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        match (*message.data(), message.metadata().attempt) {
            (5, _) => panic!("five"),
            (6, 1) => tokio::time::sleep(60 * SECOND).await,
            _ => {}
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_or_a_timeout_fails_only_the_message_it_held() {
    let queue = MemoryQueue::new();
    queue.extend(0..10);
    let pipeline = start(Misbehave, &queue, |b| {
        b.processors(
            ProcessorOptions::new()
                .concurrency(1)
                .max_demand(10)
                .timeout(SECOND),
        )
        .retry(RetryPolicy::new().max_attempts(2).first_delay(SECOND))
    })
    .await;
    queue.settled().await;
    // The pipeline goes on after both.
    queue.extend(10..20);
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    // 5 panicked twice (rejected); 6 timed out once, then succeeded.
    assert_eq!(queue.acked(), 19);
    let dead = queue.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].data, 5);
    assert!(matches!(
        &dead[0].failure,
        Some(Failure::Panic { callback: Callback::HandleMessage, message }) if &**message == "five"
    ));
    assert_eq!(report.settled.retried, 2, "5 once, 6 once");
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Panics on messages 3 and 7, and records every message it is called with.
struct PanicOnSome {
    seen: Log<u64>,
}

impl Handler for PanicOnSome {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let data = *message.data();
        self.seen.push(data);
        if data == 3 || data == 7 {
            panic!("no {data}");
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_without_a_timeout_fails_its_message_and_the_delivery_goes_on() {
    let queue = MemoryQueue::new();
    queue.extend(0..10);
    let handler = Arc::new(PanicOnSome {
        seen: Log::default(),
    });
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(1).max_demand(10))
            .retry(RetryPolicy::new().max_attempts(1))
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    // One delivery of ten: the messages after each panic were handled too, once.
    assert_eq!(handler.seen.take(), (0..10).collect::<Vec<_>>());
    assert_eq!(queue.acked(), 8);
    let mut dead: Vec<_> = queue.dead_letters().into_iter().map(|d| d.data).collect();
    dead.sort_unstable();
    assert_eq!(dead, [3, 7]);
    for letter in queue.dead_letters() {
        assert!(matches!(
            &letter.failure,
            Some(Failure::Panic { callback: Callback::HandleMessage, message }) if message.starts_with("no ")
        ));
    }
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Records each failure `handle_failed` sees, and terminates messages over 100.
struct RecordFailures {
    failures: Log<(u64, String)>,
}

impl Handler for RecordFailures {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        if *message.data() % 2 == 1 {
            message.fail("odd");
        }
        if *message.data() == 8 {
            message.put_batcher("nowhere");
        }
        Ok(())
    }

    async fn handle_failed(&self, messages: &mut [Message<u64>]) {
        for message in messages {
            let failure = message
                .failure()
                .map(ToString::to_string)
                .unwrap_or_default();
            self.failures.push((*message.data(), failure));
            if *message.data() > 100 {
                message.settle_as(Outcome::Terminate);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn handle_failed_sees_each_failure_and_can_choose_the_outcome() {
    let queue = MemoryQueue::new();
    queue.extend([1, 2, 8, 101, 102]);
    let handler = Arc::new(RecordFailures {
        failures: Log::default(),
    });
    let pipeline = start(handler.clone(), &queue, |b| {
        b.retry(RetryPolicy::new().max_attempts(1))
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let mut failures = handler.failures.take();
    failures.sort();
    assert_eq!(
        failures,
        [
            (1, "odd".to_owned()),
            (8, "no batcher is named \"nowhere\"".to_owned()),
            (101, "odd".to_owned()),
        ]
    );
    assert_eq!(queue.acked(), 2, "2 and 102");
    assert_eq!(queue.terminated(), 1, "101");
    let mut dead: Vec<u64> = queue.dead_letters().iter().map(|d| d.data).collect();
    dead.sort_unstable();
    assert_eq!(dead, [1, 8]);
    assert_eq!(report.settled.terminated, 1);
    assert_eq!(report.settled.rejected, 2);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Fails `prepare_messages` for any delivery holding message 3, on its first attempt.
struct PrepareFails {
    handled: Log<(u64, u32)>,
}

impl Handler for PrepareFails {
    type Data = u64;

    async fn prepare_messages(
        &self,
        messages: &mut [Message<u64>],
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        if messages
            .iter()
            .any(|m| *m.data() == 3 && m.metadata().attempt == 1)
        {
            return Err("the lookup failed".into());
        }
        Ok(())
    }

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        self.handled
            .push((*message.data(), message.metadata().attempt));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn prepare_messages_fails_its_whole_delivery_and_none_of_it_is_handled() {
    let queue = MemoryQueue::new();
    queue.extend(0..20);
    let handler = Arc::new(PrepareFails {
        handled: Log::default(),
    });
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(
            ProcessorOptions::new()
                .concurrency(1)
                .max_demand(4)
                .min_demand(0),
        )
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let handled = handler.handled.take();
    // Message 3 reached handle_message only on a later attempt, and so did the rest of
    // the delivery it failed with: nothing handled at attempt 1 was in it.
    assert!(handled.contains(&(3, 2)));
    assert!(!handled.contains(&(3, 1)));
    let retried = report.settled.retried;
    assert!((1..=4).contains(&retried), "the failed delivery: {retried}");
    assert_eq!(
        handled.iter().filter(|(_, attempt)| *attempt == 2).count() as u64,
        retried
    );
    assert_eq!(queue.acked(), 20);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Routes each message to a batcher by parity; records the batches.
struct ByParity {
    batches: Log<(String, Vec<u64>)>,
}

impl Handler for ByParity {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let name = if *message.data() % 2 == 0 {
            "even"
        } else {
            "odd"
        };
        message.put_batcher(name);
        Ok(())
    }

    async fn handle_batch(&self, batch: Batch<u64>) -> BatchOutcome<u64> {
        let name = batch.info().batcher.to_string();
        self.batches.push((name, batch.data().copied().collect()));
        batch.done()
    }
}

#[tokio::test(start_paused = true)]
async fn messages_reach_the_batcher_they_were_routed_to() {
    let queue = MemoryQueue::new();
    queue.extend(0..200);
    let handler = Arc::new(ByParity {
        batches: Log::default(),
    });
    let batcher = BatcherOptions::new()
        .batch_size(7)
        .batch_timeout(Duration::from_millis(50));
    let pipeline = start(handler.clone(), &queue, |b| {
        b.processors(ProcessorOptions::new().concurrency(3))
            .batcher("even", batcher.clone())
            .batcher("odd", batcher.concurrency(2))
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let mut seen = Vec::new();
    for (name, data) in handler.batches.take() {
        assert!(!data.is_empty() && data.len() <= 7);
        let parity = if name == "even" { 0 } else { 1 };
        assert!(data.iter().all(|d| d % 2 == parity), "{name}: {data:?}");
        seen.extend(data);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    assert_eq!(queue.acked(), 200);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Acks even messages as soon as it sees them, then fails multiples of four.
struct EarlyAck {
    failed: Log<u64>,
}

impl Handler for EarlyAck {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let data = *message.data();
        if data % 2 == 0 {
            message.ack_immediately();
        }
        if data % 4 == 0 {
            return Err("too late to retry".into());
        }
        Ok(())
    }

    async fn handle_failed(&self, messages: &mut [Message<u64>]) {
        for message in messages {
            self.failed.push(*message.data());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_message_acked_immediately_is_told_once_whatever_follows() {
    let queue = MemoryQueue::new();
    queue.extend(0..10);
    let handler = Arc::new(EarlyAck {
        failed: Log::default(),
    });
    let pipeline = start(handler.clone(), &queue, |b| b).await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let mut failed = handler.failed.take();
    failed.sort_unstable();
    assert_eq!(failed, [0, 4, 8], "handle_failed still sees them");
    // The queue heard one ack per message, and nothing else: no retry of 0, 4, 8.
    let history = queue.history();
    assert_eq!(history.len(), 10);
    assert!(
        history
            .iter()
            .all(|(_, attempt, outcome)| *attempt == 1 && *outcome == Outcome::Ack)
    );
    assert_eq!(report.settled.acked, 10);
    assert_eq!(report.settled.retried, 0);
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

/// Records the data it sees, and says so.
struct Seen(Log<String>, tokio::sync::Notify);

impl Handler for Seen {
    type Data = String;

    async fn handle_message(
        &self,
        message: &mut Message<String>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        self.0.push(message.data().clone());
        self.1.notify_one();
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_transformer_turns_a_producers_events_into_messages() {
    // A producer of plain numbers (no acknowledgement): the transformer makes messages.
    let handler = Arc::new(Seen(Log::default(), tokio::sync::Notify::new()));
    let pipeline = gen_stage_pipeline::Pipeline::builder(handler.clone())
        .producer_with(
            || {
                gen_stage::source::SourceProducer::new(gen_stage::source::IterSource::new(
                    1..=3_u32,
                ))
            },
            |n: u32| Message::new(format!("#{n}"), gen_stage_pipeline::AckHandle::none()),
        )
        .start()
        .await
        .expect("starts");
    while handler.0.len() < 3 {
        handler.1.notified().await;
    }
    let report = pipeline.drain(SECOND).await;
    let mut seen = handler.0.take();
    seen.sort();
    assert_eq!(seen, ["#1", "#2", "#3"]);
    assert_eq!(report.taken_in, 3);
    assert_eq!(report.settled.acked, 3);
}
