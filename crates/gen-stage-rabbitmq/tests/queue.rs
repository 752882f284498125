//! The source against the real broker: every message acked once, retries through
//! delay queues and dead letters, terminate, the budget at the broker, drains and
//! close, two instances, declaring off, credentials.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    BatcherOptions, Handler, Message, MessageId, Outcome, PipelineBuilder, ProcessorContext,
    ProcessorOptions, RetryPolicy, StartError,
};
use gen_stage_rabbitmq::lapin::options::BasicGetOptions;
use gen_stage_rabbitmq::lapin::types::AMQPValue;
use gen_stage_rabbitmq::{ConnectError, RabbitMessage, RabbitOptions, RabbitSource};
use support::{OwnQueue, channel, counts, eventually, publish, source};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// Sends each message it handles (id, attempt, when) to the test; fails messages
/// whose body is `bad`, terminates those whose body is `stop`; waits for a permit
/// first if gated.
struct Record {
    seen: mpsc::UnboundedSender<(String, u32, Instant)>,
    gate: Option<Arc<Semaphore>>,
}

impl Handler for Record {
    type Data = RabbitMessage;

    async fn handle_message(
        &self,
        message: &mut Message<RabbitMessage>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let Some(MessageId::Text(id)) = message.metadata().id.clone() else {
            return Err("a message without its id".into());
        };
        let _ = self
            .seen
            .send((id, message.metadata().attempt, Instant::now()));
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        match message.data().data() {
            b"bad" => Err("bad message".into()),
            b"stop" => {
                message.settle_as(Outcome::Terminate);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

type Seen = mpsc::UnboundedReceiver<(String, u32, Instant)>;

fn recorder(gate: Option<Arc<Semaphore>>) -> (Record, Seen) {
    let (seen, receiver) = mpsc::unbounded_channel();
    (Record { seen, gate }, receiver)
}

/// A pipeline whose producer consumes from `source`.
fn fed_by(source: &RabbitSource, handler: Record) -> PipelineBuilder<Record> {
    let producing = source.clone();
    PipelineBuilder::new(handler)
        .producer(move || producing.producer())
        .source_health(source.clone())
}

/// Waits until the broker shows `ready` and `unacked` messages in `queue`.
async fn settles_to(queue: &str, ready: u64, unacked: u64) {
    eventually("the broker's view", || async {
        counts(queue).await == (ready, unacked)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_acked_once_and_none_is_left() {
    let Some(channel) = channel().await else {
        return;
    };
    let queue = OwnQueue::new("acked");
    let source = source(queue.options()).await;
    queue.publish(&channel, 500).await;
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&source, handler)
        .processors(ProcessorOptions::new().concurrency(4))
        .start()
        .await
        .expect("the pipeline starts");
    let mut handled: HashMap<String, u32> = HashMap::new();
    while handled.len() < 500 {
        let (id, attempt, _) = seen.recv().await.expect("the pipeline runs");
        assert_eq!(attempt, 1, "delivered once");
        *handled.entry(id).or_default() += 1;
    }
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 500, "{report:?}");
    assert_eq!(report.ack_failures.total(), 0);
    assert!(handled.values().all(|&times| times == 1));
    let mut ids: Vec<u64> = handled
        .keys()
        .map(|id| id.parse().expect("a number"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..500).collect::<Vec<u64>>());
    settles_to(&queue.name, 0, 0).await;
    let state = source.state();
    assert_eq!(
        (state.in_flight, state.voided, state.failed_outcomes),
        (0, 0, 0)
    );
    assert_eq!(state.acked, 500);
    assert!(state.connected && source.is_ready());
    source.close().await.expect("closed");
    assert!(!source.is_ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_retried_after_its_delay_then_dead_lettered_with_its_attempts() {
    let Some(channel) = channel().await else {
        return;
    };
    let queue = OwnQueue::new("retried");
    let source = source(queue.options()).await;
    for (id, body) in [("1", "bad"), ("2", "good"), ("3", "stop")] {
        let confirm = publish(&channel, &queue.name, body.as_bytes(), id).await;
        assert!(confirm.await.expect("confirmed").is_ack());
    }
    let (handler, mut seen) = recorder(None);
    let delay = Duration::from_millis(300);
    let pipeline = fed_by(&source, handler)
        .retry(
            RetryPolicy::new()
                .max_attempts(3)
                .first_delay(delay)
                .max_delay(delay)
                .no_jitter(),
        )
        .start()
        .await
        .expect("the pipeline starts");
    let mut attempts_of_bad = Vec::new();
    let mut others = 0;
    while attempts_of_bad.len() < 3 || others < 2 {
        let (id, attempt, at) = seen.recv().await.expect("the pipeline runs");
        if id == "1" {
            attempts_of_bad.push((attempt, at));
        } else {
            others += 1;
        }
    }
    settles_to(&queue.dead(), 1, 0).await;
    let report = pipeline.drain(Duration::from_secs(30)).await;
    let attempts: Vec<u32> = attempts_of_bad
        .iter()
        .map(|&(attempt, _)| attempt)
        .collect();
    assert_eq!(
        attempts,
        [1, 2, 3],
        "the attempt travels with the retried copy"
    );
    for pair in attempts_of_bad.windows(2) {
        assert!(
            pair[1].1 - pair[0].1 >= delay,
            "redelivered before its delay"
        );
    }
    assert_eq!(
        (
            report.settled.acked,
            report.settled.retried,
            report.settled.rejected,
            report.settled.terminated
        ),
        (1, 2, 1, 1),
        "{report:?}"
    );
    let dead = channel
        .basic_get(
            queue.dead().as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .expect("read")
        .expect("the dead letter");
    assert_eq!(dead.delivery.data, b"bad");
    assert_eq!(
        dead.delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str()),
        Some("1"),
        "the copy keeps the message's id"
    );
    let headers = dead.delivery.properties.headers().clone().expect("headers");
    let header = |name: &str| headers.inner().get(name).cloned();
    assert_eq!(
        header("x-gen-stage-attempt"),
        Some(AMQPValue::LongLongInt(3))
    );
    assert_eq!(
        header("x-gen-stage-queue"),
        Some(AMQPValue::LongString(queue.name.as_str().into()))
    );
    let error = match header("x-gen-stage-error") {
        Some(AMQPValue::LongString(error)) => error.to_string(),
        other => panic!("no error header: {other:?}"),
    };
    assert!(error.contains("bad message"), "{error}");
    assert_eq!(header("x-delivery-count"), None);
    // Nothing is left: the rejected and terminated messages are gone for good.
    settles_to(&queue.name, 0, 0).await;
    let state = source.state();
    assert_eq!((state.retried, state.dead_lettered), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_flight_stay_within_the_budget_at_the_broker() {
    let Some(channel) = channel().await else {
        return;
    };
    let queue = OwnQueue::new("budget");
    let source = source(queue.options().max_in_flight(10)).await;
    queue.publish(&channel, 40).await;
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = fed_by(&source, handler)
        .processors(ProcessorOptions::new().concurrency(4).max_demand(3))
        .start()
        .await
        .expect("the pipeline starts");
    for _ in 0..4 {
        seen.recv().await.expect("the pipeline runs");
    }
    // The prefetch is the budget: the broker delivers 10 and holds the rest.
    settles_to(&queue.name, 30, 10).await;
    for _ in 0..8 {
        gate.add_permits(4);
        let (_, unacked) = counts(&queue.name).await;
        assert!(unacked <= 10, "{unacked} delivered and not acked");
        assert!(source.state().in_flight <= 10);
    }
    gate.add_permits(100);
    settles_to(&queue.name, 0, 0).await;
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 40, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_acks_what_was_handled_and_close_gives_back_the_rest() {
    use gen_stage::source::FetchProducer;
    let Some(channel) = channel().await else {
        return;
    };
    let queue = OwnQueue::new("drain");
    let first = source(queue.options().max_in_flight(20)).await;
    queue.publish(&channel, 30).await;
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = PipelineBuilder::new(handler)
        .producer({
            let source = first.clone();
            // Fetches beyond the processors' demand: those are held by the producer.
            move || FetchProducer::new(source.fetch_source()).prefetch(10)
        })
        .processors(
            ProcessorOptions::new()
                .concurrency(1)
                .max_demand(2)
                .min_demand(1),
        )
        .start()
        .await
        .expect("the pipeline starts");
    seen.recv().await.expect("a message is in the handler");
    let pipeline = Arc::new(pipeline);
    let draining = tokio::spawn({
        let pipeline = pipeline.clone();
        async move { pipeline.drain(Duration::from_secs(30)).await }
    });
    gate.add_permits(100);
    let report = draining.await.expect("the drain ends");
    assert!(!report.deadline_reached);
    assert_eq!(report.settled.total(), report.taken_in, "{report:?}");
    let acked = report.settled.acked;
    assert!(acked >= 1, "{report:?}");
    assert_eq!(first.state().in_flight, 0);
    // Released messages are ready again; those the broker pushed and the pipeline
    // never took stay with the connection until it closes.
    first.close().await.expect("closed");
    settles_to(&queue.name, 30 - acked, 0).await;
    let (handler, mut again) = recorder(None);
    let second = source(queue.options()).await;
    let other = fed_by(&second, handler).start().await.expect("starts");
    let mut delivered_before = 0;
    for _ in acked..30 {
        let (_, attempt, _) = again.recv().await.expect("the pipeline runs");
        delivered_before += u32::from(attempt > 1);
    }
    assert!(
        delivered_before > 0,
        "the released messages count a delivery"
    );
    assert_eq!(
        other.drain(Duration::from_secs(10)).await.settled.acked,
        30 - acked
    );
    settles_to(&queue.name, 0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_queue_and_each_message_is_acked_once() {
    let Some(channel) = channel().await else {
        return;
    };
    let queue = OwnQueue::new("shared");
    let sources = [
        source(queue.options().max_in_flight(100)).await,
        source(queue.options().max_in_flight(100)).await,
    ];
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut pipelines = Vec::new();
    for source in &sources {
        let handler = Record {
            seen: seen_tx.clone(),
            gate: None,
        };
        pipelines.push(fed_by(source, handler).start().await.expect("starts"));
    }
    queue.publish(&channel, 1000).await;
    let mut handled: HashMap<String, u32> = HashMap::new();
    while handled.len() < 1000 {
        let (id, _, _) = seen.recv().await.expect("the pipelines run");
        *handled.entry(id).or_default() += 1;
    }
    let mut acked = 0;
    for pipeline in pipelines {
        acked += pipeline.drain(Duration::from_secs(30)).await.settled.acked;
    }
    assert_eq!(acked, 1000);
    assert!(
        handled.values().all(|&times| times == 1),
        "a message handled twice"
    );
    settles_to(&queue.name, 0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_declare_off_a_missing_queue_is_a_typed_error_and_a_provisioned_one_works() {
    let Some(channel) = channel().await else {
        return;
    };
    let queue = OwnQueue::new("provisioned");
    let missing = RabbitSource::connect(&support::url(), queue.options().declare(false)).await;
    assert!(
        matches!(missing, Err(ConnectError::Queue { ref queue, .. }) if queue.starts_with("gsr_")),
        "{missing:?}"
    );
    // Provisioned elsewhere (here by a source that declares), then used without.
    source(queue.options()).await.close().await.expect("closed");
    let source = source(queue.options().declare(false)).await;
    queue.publish(&channel, 3).await;
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&source, handler).start().await.expect("starts");
    for _ in 0..3 {
        seen.recv().await.expect("the pipeline runs");
    }
    assert_eq!(
        pipeline.drain(Duration::from_secs(10)).await.settled.acked,
        3
    );
    let bad =
        RabbitSource::connect(&support::url(), RabbitOptions::new("x").max_in_flight(0)).await;
    assert!(matches!(bad, Err(ConnectError::Options { .. })), "{bad:?}");
    let url = RabbitSource::connect("http://nowhere", RabbitOptions::new("x")).await;
    assert!(matches!(url, Err(ConnectError::Url { .. })), "{url:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_the_url_and_wrong_ones_are_a_typed_error() {
    let Some(_channel) = channel().await else {
        return;
    };
    let queue = OwnQueue::new("credentials");
    // The user named in the URL (the broker's guest user by default).
    let url = support::url();
    let good = RabbitSource::connect(&url, queue.options())
        .await
        .expect("the URL's credentials connect");
    assert!(good.is_ready());
    good.close().await.expect("closed");
    let (user, rest) = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(credentials, rest)| Some((credentials.split_once(':')?.0, rest)))
        .expect("GEN_STAGE_AMQP_URL names a user and password");
    let wrong = format!("amqp://{user}:wrong-{}@{rest}", std::process::id());
    let refused = RabbitSource::connect(&wrong, queue.options()).await;
    assert!(
        matches!(refused, Err(ConnectError::Connect(_))),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_cannot_fill_a_batch_stops_the_start() {
    let Some(_channel) = channel().await else {
        return;
    };
    let queue = OwnQueue::new("small");
    let source = source(queue.options().max_in_flight(5)).await;
    let (handler, _seen) = recorder(None);
    let started = fed_by(&source, handler)
        .batcher("out", BatcherOptions::new().batch_size(6))
        .start()
        .await;
    assert!(
        matches!(
            started,
            Err(StartError::BudgetTooSmall {
                budget: 5,
                batch_size: 6,
                ..
            })
        ),
        "{:?}",
        started.map(|_| ())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_is_declared_again_and_every_producer_consumes_it() {
    use gen_stage_rabbitmq::lapin::options::QueueDeleteOptions;
    let Some(channel) = channel().await else {
        return;
    };
    let queue = OwnQueue::new("deleted");
    let source = source(queue.options().max_in_flight(10)).await;
    let (handler, mut seen) = recorder(None);
    // Two producers wait on the one consumer when the broker cancels it.
    let pipeline = PipelineBuilder::new(handler)
        .producer({
            let source = source.clone();
            move || source.producer()
        })
        .producer({
            let source = source.clone();
            move || source.producer()
        })
        .source_health(source.clone())
        .start()
        .await
        .expect("the pipeline starts");
    queue.publish(&channel, 5).await;
    for _ in 0..5 {
        seen.recv().await.expect("the pipeline runs");
    }
    settles_to(&queue.name, 0, 0).await;
    channel
        .queue_delete(queue.name.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("deleted");
    // The source connects again and declares the queue; then it takes new messages.
    eventually("consuming again", || async {
        source.is_ready() && counts(&queue.name).await == (0, 0)
    })
    .await;
    queue.publish(&channel, 5).await;
    let mut again = Vec::new();
    while again.len() < 5 {
        let (id, _, _) = tokio::time::timeout(Duration::from_secs(60), seen.recv())
            .await
            .expect("no producer hangs on the ended consumer")
            .expect("the pipeline runs");
        again.push(id);
    }
    settles_to(&queue.name, 0, 0).await;
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 10, "{report:?}");
}

/// Holds the message whose body is `0` until the gate opens; the rest pass.
struct HoldFirst {
    held: mpsc::UnboundedSender<()>,
    gate: Arc<Semaphore>,
}

impl Handler for HoldFirst {
    type Data = RabbitMessage;

    async fn handle_message(
        &self,
        message: &mut Message<RabbitMessage>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        if message.data().data() == b"0" {
            let _ = self.held.send(());
            self.gate.acquire().await?.forget();
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_batched_into_one_frame_never_cover_a_message_still_in_a_handler() {
    let Some(channel) = channel().await else {
        return;
    };
    let queue = OwnQueue::new("covered");
    let source = source(queue.options().max_in_flight(50)).await;
    queue.publish(&channel, 40).await;
    let gate = Arc::new(Semaphore::new(0));
    let (held, mut holding) = mpsc::unbounded_channel();
    let pipeline = PipelineBuilder::new(HoldFirst {
        held,
        gate: gate.clone(),
    })
    .producer({
        let source = source.clone();
        move || source.producer()
    })
    // One message per processor at a time: the other processor handles the rest.
    .processors(
        ProcessorOptions::new()
            .concurrency(2)
            .max_demand(1)
            .min_demand(0),
    )
    .start()
    .await
    .expect("the pipeline starts");
    holding.recv().await.expect("the first message is held");
    // Every other message is acked; the first, the lowest tag, is not: the broker
    // still counts it unacked, whatever the batched acks after it said.
    settles_to(&queue.name, 0, 1).await;
    assert_eq!(source.state().in_flight, 1);
    gate.add_permits(1);
    settles_to(&queue.name, 0, 0).await;
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 40, "{report:?}");
    let state = source.state();
    assert_eq!((state.voided, state.failed_outcomes), (0, 0), "{state:?}");
}
