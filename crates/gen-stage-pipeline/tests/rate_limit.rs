//! The rate limit: at most N messages per window across all producers, and while it
//! binds nothing is fetched from the sources. Test messages pushed beside the
//! producers report their outcomes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    Batch, BatchOutcome, BatcherOptions, Handler, MemoryQueue, Message, NoRateLimit, Outcome,
    ProcessorContext, ProcessorOptions, RateLimit, RetryPolicy,
};
use support::{Accept, Log, SECOND, assert_adds_up, assert_settled_once, start};
use tokio::time::Instant;

/// Records when each message is handled, and how many the queue had in flight then.
struct Timed {
    queue: MemoryQueue<u64>,
    handled: Log<(Instant, usize)>,
}

impl Handler for Timed {
    type Data = u64;

    async fn handle_message(
        &self,
        _: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        self.handled.push((Instant::now(), self.queue.in_flight()));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn no_more_than_the_limit_is_taken_in_per_window_across_producers() {
    let queue = MemoryQueue::new();
    queue.extend(0..100);
    let handler = Arc::new(Timed {
        queue: queue.clone(),
        handled: Log::default(),
    });
    let began = Instant::now();
    let second_source = queue.clone();
    let pipeline = start(handler.clone(), &queue, |b| {
        // Two producers of one queue share the limit.
        b.producer(move || second_source.producer())
            .processors(ProcessorOptions::new().concurrency(3).max_demand(8))
            .rate_limit(RateLimit::new(10, SECOND))
    })
    .await;
    queue.settled().await;
    let report = pipeline.drain(5 * SECOND).await;

    let handled = handler.handled.take();
    assert_eq!(handled.len(), 100);
    let mut per_window = [0usize; 12];
    for (at, in_flight) in &handled {
        let window = ((*at - began).as_secs_f64()) as usize;
        per_window[window] += 1;
        // Nothing was fetched beyond what the window allowed.
        assert!(*in_flight <= 10, "{in_flight} in flight");
    }
    assert!(
        per_window.iter().all(|&count| count <= 10),
        "{per_window:?}"
    );
    assert!(handled.last().map(|(at, _)| *at - began) >= Some(9 * SECOND));
    assert_adds_up(&report);
    assert_settled_once(&queue);
}

#[tokio::test(start_paused = true)]
async fn the_limit_is_read_and_changed_at_run_time() {
    let queue = MemoryQueue::new();
    let pipeline = start(Accept, &queue, |b| b.rate_limit(RateLimit::new(5, SECOND))).await;
    let state = pipeline.rate_limit().expect("a limit");
    assert_eq!(state.limit, RateLimit::new(5, SECOND));
    assert_eq!(state.remaining, 5);

    queue.extend(0..5);
    queue.settled().await;
    assert_eq!(pipeline.rate_limit().map(|s| s.remaining), Some(0));

    // Raised, with a new window now: 50 more go through within a window.
    let raised = RateLimit::new(50, 10 * SECOND);
    pipeline.set_rate_limit(raised, true).expect("has a limit");
    let began = Instant::now();
    queue.extend(5..55);
    queue.settled().await;
    assert!(Instant::now() - began < 10 * SECOND);
    assert_eq!(pipeline.rate_limit().map(|s| s.limit), Some(raised));

    let unlimited = start(Accept, &MemoryQueue::new(), |b| b).await;
    assert_eq!(unlimited.rate_limit(), None);
    assert_eq!(unlimited.set_rate_limit(raised, false), Err(NoRateLimit));
}

/// Fails 13; batches the rest.
struct Unlucky;

impl Handler for Unlucky {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        if *message.data() == 13 {
            return Err("unlucky".into());
        }
        message.put_batcher("out");
        Ok(())
    }

    async fn handle_batch(&self, mut batch: Batch<u64>) -> BatchOutcome<u64> {
        for message in batch.messages_mut() {
            if *message.data() == 7 {
                message.fail("seven");
            }
        }
        batch.done()
    }
}

#[tokio::test(start_paused = true)]
async fn test_messages_report_their_outcomes_in_order_whatever_the_producer() {
    // The producer's queue stays empty: test messages enter beside it.
    let queue = MemoryQueue::new();
    let pipeline = start(Unlucky, &queue, |b| {
        b.batcher(
            "out",
            BatcherOptions::new()
                .batch_size(4)
                .batch_timeout(Duration::from_secs(30)),
        )
        .retry(RetryPolicy::new().max_attempts(1))
    })
    .await;
    let outcomes = pipeline.test_batch(0..20).await;
    assert_eq!(outcomes.len(), 20);
    for (index, settled) in outcomes.iter().enumerate() {
        assert_eq!(settled.tag.0, index as u64);
        let expected = match index {
            7 | 13 => Outcome::Reject,
            _ => Outcome::Ack,
        };
        assert_eq!(settled.outcome, expected, "message {index}");
    }
    let reasons: Vec<String> = [7, 13]
        .iter()
        .map(|&i| {
            outcomes[i]
                .failure
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(reasons, ["seven", "unlucky"]);
    assert_eq!(pipeline.test_message(1).await.outcome, Outcome::Ack);
    let report = pipeline.drain(SECOND).await;
    assert_eq!(report.taken_in, 21);
    assert_adds_up(&report);
    // After the drain, a test message is not taken in: it comes back released.
    assert_eq!(pipeline.test_message(2).await.outcome, Outcome::Release);
}
