//! The source against the real server: every entry acked once, retries with delays
//! and dead letters, the budget in the pending list, long handlers, drains, two
//! instances, restarts, voided outcomes, declaring off, names in use, idle
//! consumers.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    BatcherOptions, Handler, Message, MessageId, Outcome, PipelineBuilder, ProcessorContext,
    ProcessorOptions, RetryPolicy, StartError,
};
use gen_stage_redis::redis::streams::StreamId;
use gen_stage_redis::redis::{self, AsyncCommands};
use gen_stage_redis::{ConnectError, RedisSource};
use support::{OwnStream, connection, eventually, source, url};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// What a handler saw of one delivery.
#[derive(Debug)]
struct Seen {
    id: String,
    n: String,
    attempt: u32,
    at: Instant,
}

/// Sends each entry it handles to the test; fails entries whose `n` is `bad`,
/// terminates those whose `n` is `stop`; waits for a permit first if gated.
struct Record {
    seen: mpsc::UnboundedSender<Seen>,
    gate: Option<Arc<Semaphore>>,
}

impl Handler for Record {
    type Data = StreamId;

    async fn handle_message(
        &self,
        message: &mut Message<StreamId>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let Some(MessageId::Text(id)) = message.metadata().id.clone() else {
            return Err("an entry without its id".into());
        };
        let n: String = message.data().get("n").unwrap_or_default();
        let _ = self.seen.send(Seen {
            id,
            n: n.clone(),
            attempt: message.metadata().attempt,
            at: Instant::now(),
        });
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        match n.as_str() {
            "bad" => Err("bad entry".into()),
            "stop" => {
                message.settle_as(Outcome::Terminate);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn recorder(gate: Option<Arc<Semaphore>>) -> (Record, mpsc::UnboundedReceiver<Seen>) {
    let (seen, receiver) = mpsc::unbounded_channel();
    (Record { seen, gate }, receiver)
}

/// A pipeline whose producer reads from `source`.
fn fed_by(source: &RedisSource, handler: Record) -> PipelineBuilder<Record> {
    let producing = source.clone();
    PipelineBuilder::new(handler)
        .producer(move || producing.producer())
        .source_health(source.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_is_acked_once_and_none_is_left() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("acked");
    let source = source(stream.options("c1")).await;
    stream.add(&mut redis, 500).await;
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&source, handler)
        .processors(ProcessorOptions::new().concurrency(4))
        .start()
        .await
        .expect("the pipeline starts");
    let mut handled: HashMap<String, u32> = HashMap::new();
    while handled.len() < 500 {
        let seen = seen.recv().await.expect("the pipeline runs");
        assert_eq!(seen.attempt, 1, "delivered once");
        *handled.entry(seen.n).or_default() += 1;
    }
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 500, "{report:?}");
    assert_eq!(report.ack_failures.total(), 0);
    assert!(handled.values().all(|&times| times == 1));
    stream.settled(&redis).await;
    let state = source.state();
    assert_eq!(
        (
            state.in_flight,
            state.acked,
            state.voided,
            state.failed_outcomes
        ),
        (0, 500, 0, 0)
    );
    source.close().await.expect("closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_entry_is_retried_after_its_delay_then_dead_lettered_with_its_attempts() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("retried");
    let source = source(stream.options("c1")).await;
    let bad = stream.add_one(&mut redis, "bad").await;
    stream.add_one(&mut redis, "good").await;
    stream.add_one(&mut redis, "stop").await;
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
    let mut tries_of_bad = Vec::new();
    let mut others = 0;
    while tries_of_bad.len() < 3 || others < 2 {
        let seen = seen.recv().await.expect("the pipeline runs");
        if seen.n == "bad" {
            tries_of_bad.push(seen);
        } else {
            others += 1;
        }
    }
    eventually("the dead letter is added", || {
        let mut redis = redis.clone();
        let dead = stream.dead();
        async move { redis.xlen::<_, u64>(dead).await.unwrap_or(0) == 1 }
    })
    .await;
    let report = pipeline.drain(Duration::from_secs(30)).await;
    let attempts: Vec<u32> = tries_of_bad.iter().map(|seen| seen.attempt).collect();
    assert_eq!(attempts, [1, 2, 3], "the attempts carried across retries");
    assert!(
        tries_of_bad.iter().all(|seen| seen.id == bad),
        "the first entry's id stays the id: {tries_of_bad:?}"
    );
    for pair in tries_of_bad.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= delay,
            "delivered before its delay"
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
    let dead: redis::streams::StreamRangeReply = redis
        .xrange_all(stream.dead())
        .await
        .expect("the dead letters");
    let letter = &dead.ids[0];
    let field = |name: &str| letter.get::<String>(name);
    assert_eq!(field("n").as_deref(), Some("bad"));
    assert_eq!(field("gen-stage-id"), Some(bad));
    assert_eq!(field("gen-stage-attempt").as_deref(), Some("3"));
    assert_eq!(field("gen-stage-group").as_deref(), Some("workers"));
    assert!(field("gen-stage-error").is_some_and(|error| error.contains("bad entry")));
    stream.settled(&redis).await;
    let delayed: u64 = redis
        .zcard(format!("{}:delayed", stream.name))
        .await
        .expect("ZCARD");
    assert_eq!(delayed, 0, "no retry left waiting");
    let state = source.state();
    assert_eq!((state.retried, state.dead_lettered), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_in_flight_stay_within_the_budget_at_the_server() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("budget");
    let source = source(stream.options("c1").max_in_flight(10)).await;
    stream.add(&mut redis, 40).await;
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
    eventually("the budget is in flight", || {
        let mut redis = redis.clone();
        let stream = &stream;
        async move { stream.pending_total(&mut redis).await == 10 }
    })
    .await;
    // One entry at a time is let through; the pending list, read meanwhile, never
    // holds more than the budget.
    for _ in 0..40 {
        gate.add_permits(1);
        let pending = stream.pending_total(&mut redis).await;
        assert!(pending <= 10, "{pending} entries pending");
        assert!(source.state().in_flight <= 10);
    }
    stream.settled(&redis).await;
    gate.add_permits(100);
    let report = pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(report.settled.acked, 40, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_runs_three_leases_keeps_its_entry_from_the_other_instance() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("lease");
    let lease = Duration::from_secs(1);
    let first = source(stream.options("c1").lease(lease)).await;
    let second = source(stream.options("c2").lease(lease)).await;
    stream.add(&mut redis, 1).await;
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = fed_by(&first, handler).start().await.expect("starts");
    seen.recv().await.expect("the first instance takes it");
    let (other_handler, mut other_seen) = recorder(None);
    let other = fed_by(&second, other_handler)
        .start()
        .await
        .expect("starts");
    // The handler works for three leases; renewals keep the entry its own, while the
    // other instance sweeps for abandoned entries every quarter lease.
    tokio::time::sleep(lease * 3).await;
    assert!(
        other_seen.try_recv().is_err(),
        "claimed by the other instance while its handler worked"
    );
    gate.add_permits(1);
    stream.settled(&redis).await;
    let report = pipeline.drain(Duration::from_secs(10)).await;
    assert_eq!(report.settled.acked, 1, "{report:?}");
    assert_eq!(first.state().voided, 0);
    other.drain(Duration::from_secs(10)).await;
    assert!(other_seen.try_recv().is_err(), "never delivered twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_group_and_each_entry_is_acked_once() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("shared");
    let first = source(stream.options("c1").max_in_flight(20)).await;
    let second = source(stream.options("c2").max_in_flight(20)).await;
    let (handler, mut seen) = recorder(None);
    let (other_handler, mut other_seen) = recorder(None);
    let one = fed_by(&first, handler).start().await.expect("starts");
    let two = fed_by(&second, other_handler)
        .start()
        .await
        .expect("starts");
    stream.add(&mut redis, 400).await;
    let mut handled: HashMap<String, u32> = HashMap::new();
    while handled.len() < 400 {
        let seen = tokio::select! {
            Some(seen) = seen.recv() => seen,
            Some(seen) = other_seen.recv() => seen,
        };
        *handled.entry(seen.n).or_default() += 1;
    }
    let (a, b) = (
        one.drain(Duration::from_secs(10)).await,
        two.drain(Duration::from_secs(10)).await,
    );
    assert_eq!(a.settled.acked + b.settled.acked, 400, "{a:?} {b:?}");
    assert!(handled.values().all(|&times| times == 1));
    stream.settled(&redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_takes_back_what_its_consumer_held_and_dead_consumers_entries_are_claimed() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("restart");
    stream.create_group(&mut redis, "0").await;
    // What a crashed `c1` and a dead `gone` held: read, never acked.
    stream.add(&mut redis, 4).await;
    stream.read_as(&mut redis, "c1", 2).await;
    stream.read_as(&mut redis, "gone", 2).await;
    let restarted = source(stream.options("c1")).await;
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&restarted, handler).start().await.expect("starts");
    let mut taken = Vec::new();
    for _ in 0..4 {
        let seen = seen.recv().await.expect("the pipeline runs");
        taken.push((seen.n, seen.attempt));
    }
    // Its own at once, the dead consumer's once their lease ran out, each a second
    // delivery.
    taken[..2].sort();
    taken[2..].sort();
    assert_eq!(
        taken
            .iter()
            .map(|(n, attempt)| (n.as_str(), *attempt))
            .collect::<Vec<_>>(),
        [("0", 2), ("1", 2), ("2", 2), ("3", 2)]
    );
    stream.settled(&redis).await;
    pipeline.drain(Duration::from_secs(10)).await;
    assert_eq!(restarted.state().claimed, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_for_an_entry_another_consumer_claimed_is_voided() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("voided");
    let source = source(stream.options("c1")).await;
    let id = stream.add_one(&mut redis, "0").await;
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = fed_by(&source, handler).start().await.expect("starts");
    seen.recv().await.expect("taken");
    // Another consumer claims it while the handler works (as after a lost lease).
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(&stream.name)
        .arg("workers")
        .arg("thief")
        .arg(0)
        .arg(&id)
        .query_async(&mut redis)
        .await
        .expect("XCLAIM");
    // The next renewal finds it gone; the ack is then checked, and voided.
    eventually("the loss is seen", || {
        let source = source.clone();
        async move { source.state().lost == 1 }
    })
    .await;
    gate.add_permits(1);
    eventually("the outcome is voided", || {
        let source = source.clone();
        async move { source.state().voided == 1 }
    })
    .await;
    assert_eq!(
        stream.pending(&mut redis).await,
        [("thief".to_owned(), 1)],
        "the thief's delivery is untouched"
    );
    pipeline.drain(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_releases_what_was_read_and_another_instance_takes_it() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("drain");
    let first = source(stream.options("c1")).await;
    stream.add(&mut redis, 20).await;
    // A fetch that read 20 entries, of which the pipeline took none: given back.
    let mut fetch = first.fetch_source();
    let mut read = Vec::new();
    while read.len() < 20 {
        gen_stage::source::Fetch::fetch(&mut fetch, 20 - read.len(), &mut read)
            .await
            .expect("read");
    }
    assert_eq!(stream.pending_total(&mut redis).await, 20);
    gen_stage::source::Fetch::give_back(&mut fetch, read).await;
    drop(fetch);
    // Given back, they no longer count against the consumer: they wait, claimable,
    // under the released entries' consumer.
    assert_eq!(
        stream.pending(&mut redis).await,
        [("gen-stage-released".to_owned(), 20)]
    );
    first.close().await.expect("closed");
    let second = source(stream.options("c2")).await;
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&second, handler).start().await.expect("starts");
    for _ in 0..20 {
        let seen = seen.recv().await.expect("the other instance takes them");
        assert_eq!(seen.attempt, 2, "a second delivery");
    }
    stream.settled(&redis).await;
    let report = pipeline.drain(Duration::from_secs(10)).await;
    assert_eq!(report.settled.acked, 20, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_the_same_consumer_name_is_refused() {
    let Some(_redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("name");
    let options = stream.options("c1").lease(Duration::from_millis(300));
    let first = source(options.clone()).await;
    let second = RedisSource::connect(url().as_str(), options.clone()).await;
    assert!(
        matches!(&second, Err(ConnectError::ConsumerInUse { consumer, .. }) if consumer == "c1"),
        "{second:?}"
    );
    // Let go at close: the name is free at once.
    first.close().await.expect("closed");
    let third = RedisSource::connect(url().as_str(), options).await;
    assert!(third.is_ok(), "{third:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_declare_off_a_missing_group_is_a_typed_error_and_a_provisioned_one_works() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("declare");
    let missing = RedisSource::connect(url().as_str(), stream.options("c1").declare(false)).await;
    assert!(
        matches!(missing, Err(ConnectError::Group { .. })),
        "{missing:?}"
    );
    stream.create_group(&mut redis, "$").await;
    let provisioned = source(stream.options("c1").declare(false)).await;
    stream.add(&mut redis, 3).await;
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&provisioned, handler).start().await.expect("starts");
    for _ in 0..3 {
        seen.recv().await.expect("read");
    }
    pipeline.drain(Duration::from_secs(10)).await;
    stream.settled(&redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_connects_with_its_password_and_a_wrong_one_is_a_typed_error() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("acl");
    let user = format!("{}_user", stream.name);
    let prefix = format!("~{}*", stream.name);
    // Exactly the rights the guide lists.
    let rights = "+xreadgroup +xack +xdel +xclaim +xpending +xinfo +xgroup +xadd +xrange \
         +zadd +zrangebyscore +zrange +zrem +get +set +del +evalsha +script|load +time";
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(">s3cret")
        .arg(&prefix)
        .arg(rights.split_whitespace().collect::<Vec<_>>())
        .query_async(&mut redis)
        .await
        .expect("ACL SETUSER");
    // The scripts may be cached already from other tests: loading them is allowed.
    let may_load: String = redis::cmd("ACL")
        .arg("DRYRUN")
        .arg(&user)
        .arg("SCRIPT")
        .arg("LOAD")
        .arg("return 1")
        .query_async(&mut redis)
        .await
        .expect("ACL DRYRUN");
    assert_eq!(may_load, "OK");
    struct DeleteUser(String);
    impl Drop for DeleteUser {
        fn drop(&mut self) {
            if let Ok(mut connection) =
                redis::Client::open(url()).and_then(|client| client.get_connection())
            {
                let _: Result<u64, _> = redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(&self.0)
                    .query(&mut connection);
            }
        }
    }
    let _delete = DeleteUser(user.clone());
    let host = url().trim_start_matches("redis://").to_owned();
    let wrong = RedisSource::connect(
        format!("redis://{user}:wrong@{host}").as_str(),
        stream.options("c1"),
    )
    .await;
    assert!(matches!(wrong, Err(ConnectError::Connect(_))), "{wrong:?}");
    let source = source_at(
        &format!("redis://{user}:s3cret@{host}"),
        // Acked entries deleted too: the rights cover that path.
        stream.options("c1").delete_on_ack(true),
    )
    .await;
    stream.add(&mut redis, 5).await;
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&source, handler).start().await.expect("starts");
    for _ in 0..5 {
        seen.recv().await.expect("read as the user");
    }
    let report = pipeline.drain(Duration::from_secs(10)).await;
    assert_eq!(report.settled.acked, 5, "{report:?}");
    assert_eq!(report.ack_failures.total(), 0, "{report:?}");
    stream.settled(&redis).await;
    let length: u64 = redis.xlen(&stream.name).await.expect("XLEN");
    assert_eq!(length, 0, "acked entries deleted");
    let state = source.state();
    assert_eq!((state.acked, state.failed_outcomes), (5, 0), "{state:?}");
}

async fn source_at(url: &str, options: gen_stage_redis::RedisOptions) -> RedisSource {
    RedisSource::connect(url, options)
        .await
        .expect("the source connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_idle_with_nothing_pending_are_forgotten_and_busy_ones_kept() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("forget");
    let group = |consumer: &str| {
        redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(&stream.name)
            .arg("workers")
            .arg(consumer)
            .to_owned()
    };
    stream.create_group(&mut redis, "$").await;
    let _: u8 = group("idle")
        .query_async(&mut redis)
        .await
        .expect("a consumer");
    let _: u8 = group("busy")
        .query_async(&mut redis)
        .await
        .expect("a consumer");
    stream.add(&mut redis, 1).await;
    stream.read_as(&mut redis, "busy", 1).await;
    let source = source(
        stream
            .options("c1")
            // Idle consumers are looked for every third of the lease.
            .lease(Duration::from_secs(1))
            .forget_consumers_after(Some(Duration::from_millis(10))),
    )
    .await;
    let names = || {
        let mut redis = redis.clone();
        let name = stream.name.clone();
        async move {
            let consumers: redis::streams::StreamInfoConsumersReply = redis
                .xinfo_consumers(name, "workers")
                .await
                .expect("XINFO CONSUMERS");
            let mut names: Vec<String> = consumers
                .consumers
                .into_iter()
                .map(|consumer| consumer.name)
                .collect();
            names.sort();
            names
        }
    };
    eventually("the idle consumer is forgotten", || async {
        !names().await.contains(&"idle".to_owned())
    })
    .await;
    assert!(
        names().await.contains(&"busy".to_owned()),
        "one with pending entries stays"
    );
    drop(source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_with_binary_field_names_is_dead_lettered_and_the_rest_handled() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("binary");
    let source = source(stream.options("c1")).await;
    stream.add_one(&mut redis, "0").await;
    let binary: String = redis::cmd("XADD")
        .arg(&stream.name)
        .arg("*")
        .arg(&[0xff_u8, 0xfe][..])
        .arg("x")
        .query_async(&mut redis)
        .await
        .expect("added");
    stream.add_one(&mut redis, "2").await;
    let (handler, mut seen) = recorder(None);
    let pipeline = fed_by(&source, handler).start().await.expect("starts");
    let mut handled = vec![
        seen.recv().await.expect("handled").n,
        seen.recv().await.expect("handled").n,
    ];
    handled.sort();
    assert_eq!(handled, ["0", "2"], "the readable entries are handled");
    stream.settled(&redis).await;
    // Copied as it is, binary field name and all, with why.
    type Fields = Vec<(Vec<u8>, Vec<u8>)>;
    let dead: Vec<(String, Fields)> = redis::cmd("XRANGE")
        .arg(stream.dead())
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .expect("the dead letters");
    assert_eq!(dead.len(), 1);
    let fields = &dead[0].1;
    assert!(fields.contains(&(vec![0xff, 0xfe], b"x".to_vec())));
    assert!(fields.contains(&(b"gen-stage-id".to_vec(), binary.into_bytes())));
    let report = pipeline.drain(Duration::from_secs(10)).await;
    assert_eq!(report.settled.acked, 2, "{report:?}");
    let state = source.state();
    assert_eq!((state.malformed, state.dead_lettered), (1, 1), "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_trimmed_while_held_counts_as_vanished_not_voided() {
    let Some(mut redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("trimmed");
    let source = source(stream.options("c1")).await;
    let id = stream.add_one(&mut redis, "bad").await;
    let gate = Arc::new(Semaphore::new(0));
    let (handler, mut seen) = recorder(Some(gate.clone()));
    let pipeline = fed_by(&source, handler)
        .retry(RetryPolicy::new().first_delay(Duration::from_secs(1)))
        .start()
        .await
        .expect("starts");
    seen.recv().await.expect("taken");
    let _: u64 = redis.xdel(&stream.name, &[&id]).await.expect("XDEL");
    // The handler fails it: its retry finds nothing to copy (or a renewal found it
    // trimmed first), and it is acked.
    gate.add_permits(1);
    eventually("settled", || {
        let source = source.clone();
        async move { source.state().vanished == 1 }
    })
    .await;
    stream.settled(&redis).await;
    let state = source.state();
    assert_eq!(
        (
            state.retried,
            state.voided,
            state.lost,
            state.failed_outcomes
        ),
        (0, 0, 0, 0),
        "{state:?}"
    );
    pipeline.drain(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_cannot_fill_a_batch_stops_the_start() {
    let Some(_redis) = connection().await else {
        return;
    };
    let stream = OwnStream::new("small");
    let source = source(stream.options("c1").max_in_flight(5)).await;
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
