//! The source against the real server: every message acked once, naks with delays
//! and dead letters, terminate, the budget at the server, long handlers, drains,
//! two instances, declaring off.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_nats::async_nats::jetstream;
use gen_stage_nats::{ConnectError, JetStreamOptions, JetStreamSource};
use gen_stage_pipeline::{
    BatcherOptions, Handler, Message, MessageId, Outcome, PipelineBuilder, ProcessorContext,
    ProcessorOptions, RetryPolicy, StartError,
};
use support::{OwnStream, client, eventually, source};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// Sends each message it handles (sequence, attempt, when) to the test; fails
/// messages whose payload is `bad`, terminates those whose payload is `stop`; waits
/// for a permit first if gated.
struct Record {
    seen: mpsc::UnboundedSender<(u64, u32, Instant)>,
    gate: Option<Arc<Semaphore>>,
}

impl Handler for Record {
    type Data = gen_stage_nats::async_nats::Message;

    async fn handle_message(
        &self,
        message: &mut Message<Self::Data>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let Some(MessageId::Number(sequence)) = message.metadata().id else {
            return Err("a message without its sequence".into());
        };
        let _ = self
            .seen
            .send((sequence, message.metadata().attempt, Instant::now()));
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        match message.data().payload.as_ref() {
            b"bad" => Err("bad message".into()),
            b"stop" => {
                message.settle_as(Outcome::Terminate);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn recorder(
    gate: Option<Arc<Semaphore>>,
) -> (Record, mpsc::UnboundedReceiver<(u64, u32, Instant)>) {
    let (seen, receiver) = mpsc::unbounded_channel();
    (Record { seen, gate }, receiver)
}

/// A pipeline whose producer pulls from `source`.
fn fed_by(source: &JetStreamSource, handler: Record) -> PipelineBuilder<Record> {
    let producing = source.clone();
    PipelineBuilder::new(handler)
        .producer(move || producing.producer())
        .source_health(source.clone())
}

/// The consumer's messages delivered and not acked, and not yet delivered, as the
/// server counts them.
async fn pending(stream: &OwnStream, client: &gen_stage_nats::async_nats::Client) -> (usize, u64) {
    let info = stream
        .consumer(client)
        .await
        .get_info()
        .await
        .expect("consumer info");
    (info.num_ack_pending, info.num_pending)
}

/// Waits until the server shows `pending` (delivered and not acked, not delivered)
/// and `stored` messages: it applies outcomes on its own time.
async fn settles_to(
    stream: &OwnStream,
    client: &gen_stage_nats::async_nats::Client,
    pending_now: (usize, u64),
    stored: u64,
) {
    eventually("the server's view", || async {
        pending(stream, client).await == pending_now
            && stream.stored(client, &stream.name).await == stored
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_acked_once_and_none_is_left() {
    let Some(client) = client().await else { return };
    let stream = OwnStream::new("acked");
    let source = source(stream.options()).await;
    stream.publish(&client, 500).await;
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&source, handler)
        .processors(ProcessorOptions::new().concurrency(4))
        .start()
        .await
        .expect("the pipeline starts");
    let mut handled: HashMap<u64, u32> = HashMap::new();
    while handled.len() < 500 {
        let (sequence, attempt, _) = seen.recv().await.expect("the pipeline runs");
        assert_eq!(attempt, 1, "delivered once");
        *handled.entry(sequence).or_default() += 1;
    }
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 500, "{report:?}");
    assert_eq!(report.ack_failures.total(), 0);
    assert!(handled.values().all(|&times| times == 1));
    let mut sequences: Vec<u64> = handled.into_keys().collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=500).collect::<Vec<u64>>());
    settles_to(&stream, &client, (0, 0), 0).await;
    let state = source.state();
    assert_eq!(
        (state.in_flight, state.voided, state.failed_outcomes),
        (0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_message_is_nakked_with_its_delay_then_dead_lettered_with_its_attempts() {
    let Some(client) = client().await else { return };
    let stream = OwnStream::new("retried");
    let source = source(stream.options()).await;
    let js = jetstream::new(client.clone());
    for payload in ["bad", "good", "stop"] {
        js.publish(stream.subject(), payload.into())
            .await
            .expect("published")
            .await
            .expect("stored");
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
        let (sequence, attempt, at) = seen.recv().await.expect("the pipeline runs");
        if sequence == 1 {
            attempts_of_bad.push((attempt, at));
        } else {
            others += 1;
        }
    }
    eventually("the dead letter is stored", || async {
        stream
            .stored(&client, &format!("{}_dead", stream.name))
            .await
            == 1
    })
    .await;
    let report = pipeline.drain(Duration::from_secs(30)).await;
    let attempts: Vec<u32> = attempts_of_bad
        .iter()
        .map(|&(attempt, _)| attempt)
        .collect();
    assert_eq!(
        attempts,
        [1, 2, 3],
        "the attempt is the server's delivery count"
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
    let dead = jetstream::new(client.clone())
        .get_stream(format!("{}_dead", stream.name))
        .await
        .expect("the dead-letter stream")
        .get_raw_message(1)
        .await
        .expect("the dead letter");
    assert_eq!(dead.payload.as_ref(), b"bad");
    let header = |name: &str| {
        dead.headers
            .get(name)
            .map(|value| value.as_str().to_owned())
    };
    assert_eq!(header("Gen-Stage-Sequence").as_deref(), Some("1"));
    assert_eq!(header("Gen-Stage-Attempt").as_deref(), Some("3"));
    assert!(header("Gen-Stage-Error").is_some_and(|error| error.contains("bad message")));
    // Nothing is left: the rejected and terminated messages are gone for good.
    settles_to(&stream, &client, (0, 0), 0).await;
    assert_eq!(source.state().dead_lettered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_flight_stay_within_the_budget_at_the_server() {
    let Some(client) = client().await else { return };
    let stream = OwnStream::new("budget");
    let source = source(stream.options().max_in_flight(10)).await;
    stream.publish(&client, 40).await;
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = fed_by(&source, handler)
        .processors(ProcessorOptions::new().concurrency(4).max_demand(3))
        .start()
        .await
        .expect("the pipeline starts");
    // Four handlers hold a message each; the rest of the budget waits in the
    // processors' queues. The server's own count is the witness.
    for _ in 0..4 {
        seen.recv().await.expect("the pipeline runs");
    }
    eventually("the budget is in flight", || async {
        pending(&stream, &client).await.0 == 10
    })
    .await;
    // One message at a time is let through; the server's count, read meanwhile,
    // never goes over the budget.
    for _ in 0..40 {
        gate.add_permits(1);
        let (ack_pending, _) = pending(&stream, &client).await;
        assert!(ack_pending <= 10, "{ack_pending} delivered and not acked");
        assert!(source.state().in_flight <= 10);
    }
    eventually("all handled", || async {
        pending(&stream, &client).await == (0, 0)
    })
    .await;
    gate.add_permits(100);
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 40, "{report:?}");
    settles_to(&stream, &client, (0, 0), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_runs_three_ack_waits_keeps_its_message_from_the_other_instance() {
    let Some(client) = client().await else { return };
    let stream = OwnStream::new("lease");
    let ack_wait = Duration::from_secs(1);
    let first = source(stream.options().ack_wait(ack_wait)).await;
    let second = source(stream.options().ack_wait(ack_wait)).await;
    stream.publish(&client, 1).await;
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = fed_by(&first, handler).start().await.expect("starts");
    seen.recv().await.expect("the first instance takes it");
    let (other_handler, mut other_seen) = recorder(None);
    let other = fed_by(&second, other_handler)
        .start()
        .await
        .expect("starts");
    // The handler works for three ack waits; renewals keep the message its own.
    tokio::time::sleep(ack_wait * 3).await;
    assert!(
        other_seen.try_recv().is_err(),
        "delivered to the other instance while its handler worked"
    );
    gate.add_permits(1);
    eventually("acked", || async {
        pending(&stream, &client).await == (0, 0)
    })
    .await;
    let report = pipeline.drain(Duration::from_secs(10)).await;
    assert_eq!(report.settled.acked, 1, "{report:?}");
    assert_eq!(first.state().voided, 0);
    other.drain(Duration::from_secs(10)).await;
    assert!(other_seen.try_recv().is_err(), "never delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_acks_what_was_handled_and_naks_what_was_only_fetched() {
    use gen_stage::source::FetchProducer;
    let Some(client) = client().await else { return };
    let stream = OwnStream::new("drain");
    // An ack wait longer than the test's patience: what comes back came back by a nak.
    let options = stream.options().ack_wait(Duration::from_secs(300));
    let first = source(options.clone()).await;
    stream.publish(&client, 30).await;
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = PipelineBuilder::new(handler)
        .producer({
            let source = first.clone();
            // Fetches 10 beyond the processors' demand: those are held by the producer.
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
    eventually("acks applied", || async {
        stream.stored(&client, &stream.name).await == 30 - acked
    })
    .await;
    // What was fetched and not handled was nakked: another instance gets it now, not
    // after the ack wait, each message's delivery counted.
    let (handler, mut again) = recorder(None);
    let second = source(options).await;
    let other = fed_by(&second, handler).start().await.expect("starts");
    let mut delivered_before = 0;
    for _ in acked..30 {
        let (_, attempt, _) = again.recv().await.expect("the pipeline runs");
        delivered_before += u32::from(attempt > 1);
    }
    assert!(delivered_before > 0, "the prefetched messages were nakked");
    assert_eq!(
        other.drain(Duration::from_secs(10)).await.settled.acked,
        30 - acked
    );
    settles_to(&stream, &client, (0, 0), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_consumer_and_each_message_is_acked_once() {
    let Some(client) = client().await else { return };
    let stream = OwnStream::new("shared");
    let sources = [
        source(stream.options().max_ack_pending(200).max_in_flight(100)).await,
        source(stream.options().max_ack_pending(200).max_in_flight(100)).await,
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
    stream.publish(&client, 1000).await;
    let mut handled: HashMap<u64, u32> = HashMap::new();
    while handled.len() < 1000 {
        let (sequence, _, _) = seen.recv().await.expect("the pipelines run");
        *handled.entry(sequence).or_default() += 1;
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
    settles_to(&stream, &client, (0, 0), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_declare_off_a_missing_stream_is_a_typed_error_and_a_provisioned_one_works() {
    let Some(client) = client().await else { return };
    let stream = OwnStream::new("provisioned");
    let missing =
        JetStreamSource::connect_url(&support::url(), stream.options().declare(false)).await;
    assert!(
        matches!(missing, Err(ConnectError::Stream { ref stream, .. }) if stream.starts_with("gsn_")),
        "{missing:?}"
    );
    // Provisioned elsewhere (here by a source that declares), then used without.
    drop(source(stream.options()).await);
    let source = source(stream.options().declare(false)).await;
    stream.publish(&client, 3).await;
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&source, handler).start().await.expect("starts");
    for _ in 0..3 {
        seen.recv().await.expect("the pipeline runs");
    }
    assert_eq!(
        pipeline.drain(Duration::from_secs(10)).await.settled.acked,
        3
    );
    let bad = JetStreamSource::connect_url(
        &support::url(),
        JetStreamOptions::new("x", "y").ack_wait(Duration::from_millis(10)),
    )
    .await;
    assert!(matches!(bad, Err(ConnectError::Options { .. })), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_cannot_fill_a_batch_stops_the_start() {
    let Some(_client) = client().await else {
        return;
    };
    let stream = OwnStream::new("small");
    let source = source(stream.options().max_in_flight(5)).await;
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
