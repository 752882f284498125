//! Broker fault, Redis Streams: the kit's proxy cuts the connections mid-stream and
//! refuses the next ones; the producers connect again after their backoff and no
//! entry is lost. An instance cut off for longer than the lease loses its entry to
//! another instance, which handles it again (its second delivery); the first one's
//! outcome, once it is back, is voided, never applied to the other's delivery.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_conformance::{Proxy, brokers, wait_until};
use gen_stage_pipeline::{
    Handler, Message, MessageId, PipelineBuilder, ProcessorContext, ProcessorOptions,
};
use gen_stage_redis::redis::streams::StreamId;
use gen_stage_redis::{Backoff, RedisOptions, RedisSource};
use tokio::sync::{Semaphore, mpsc};

const MINUTE: Duration = Duration::from_secs(60);

/// Sends each entry's id and attempt to the test when it starts, then waits for a
/// permit if gated.
struct Record {
    seen: mpsc::UnboundedSender<(u64, u32)>,
    gate: Option<Arc<Semaphore>>,
}

impl Handler for Record {
    type Data = StreamId;

    async fn handle_message(
        &self,
        message: &mut Message<StreamId>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let Some(MessageId::Text(id)) = &message.metadata().id else {
            return Err("an entry without its id".into());
        };
        let n = id.split('-').next().unwrap_or(id).parse()?;
        let _ = self.seen.send((n, message.metadata().attempt));
        if let Some(gate) = &self.gate {
            gate.acquire().await?.forget();
        }
        Ok(())
    }
}

/// The kit's proxy in front of the shared server, and the server's URL through it.
async fn proxy_to_redis() -> (Proxy, String) {
    let url = brokers::redis_url();
    let (scheme, rest) = url.split_once("://").expect("a Redis URL");
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), rest),
    };
    let (address, path) = rest.split_once('/').unwrap_or((rest, ""));
    let upstream = tokio::net::lookup_host(address)
        .await
        .expect("the server's address")
        .next()
        .expect("an address");
    let proxy = Proxy::start(upstream).await.expect("a proxy");
    let through = format!("{scheme}://{credentials}127.0.0.1:{}/{path}", proxy.port());
    (proxy, through)
}

/// The next entry handled, within a minute: a guard against a hang (an entry lost
/// would otherwise be waited for for ever).
async fn next(handled: &mut mpsc::UnboundedReceiver<(u64, u32)>) -> (u64, u32) {
    tokio::time::timeout(MINUTE, handled.recv())
        .await
        .expect("no entry is lost")
        .expect("the pipeline runs")
}

fn fed_by(source: &RedisSource, handler: Record) -> PipelineBuilder<Record> {
    let producing = source.clone();
    PipelineBuilder::new(handler)
        .producer(move || producing.producer())
        .processors(
            ProcessorOptions::new()
                .concurrency(2)
                .max_demand(10)
                .min_demand(5),
        )
        .source_health(source.clone())
}

fn options(name: &str, consumer: &str) -> RedisOptions {
    RedisOptions::new(name, "workers", consumer)
        .lease(Duration::from_secs(1))
        .block(Duration::from_millis(200))
        .max_in_flight(50)
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(200),
        ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_stream_loses_no_entry_and_the_source_reconnects() {
    const MESSAGES: u64 = 300;
    let Some(mut redis) = brokers::redis().await else {
        return;
    };
    let name = format!("gsc_fault_{}", std::process::id());
    let _guard = brokers::RedisKeys(name.clone());
    let (proxy, through) = proxy_to_redis().await;
    let source = RedisSource::connect(through.as_str(), options(&name, "c1"))
        .await
        .expect("connects through the proxy");
    brokers::redis_add(&mut redis, &name, 0..MESSAGES).await;
    let (seen, mut handled) = mpsc::unbounded_channel();
    let pipeline = fed_by(&source, Record { seen, gate: None })
        .start()
        .await
        .expect("the pipeline starts");
    let mut distinct = HashSet::new();
    while distinct.len() < 100 {
        distinct.insert(next(&mut handled).await.0);
    }
    assert!(pipeline.snapshot().sources[0].connected);
    // Mid-stream: every connection cut, the next five refused.
    proxy.cut(5);
    while distinct.len() < MESSAGES as usize {
        distinct.insert(next(&mut handled).await.0);
    }
    assert_eq!(
        distinct,
        (0..MESSAGES).collect::<HashSet<u64>>(),
        "every entry handled"
    );
    // Nothing pending or unread once every entry is acked, whatever the outage
    // interrupted (outcomes lost with it are claimed again after the lease).
    wait_until("the server's view", MINUTE, || {
        let mut redis = redis.clone();
        let name = name.clone();
        async move { brokers::redis_left(&mut redis, &name).await == 0 }
    })
    .await;
    pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(proxy.refused(), 5, "the refused connections were tried");
    let state = source.state();
    assert!(state.connected && state.reconnect_attempt == 0, "{state:?}");
    assert!(state.last_error.is_some(), "the outage is reported");
    source.close().await.expect("closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_for_an_entry_claimed_during_an_outage_is_voided_not_applied() {
    let Some(mut redis) = brokers::redis().await else {
        return;
    };
    let name = format!("gsc_lapse_{}", std::process::id());
    let _guard = brokers::RedisKeys(name.clone());
    let (proxy, through) = proxy_to_redis().await;
    let cut_off = RedisSource::connect(through.as_str(), options(&name, "c1"))
        .await
        .expect("connects through the proxy");
    let direct = RedisSource::connect(brokers::redis_url().as_str(), options(&name, "c2"))
        .await
        .expect("connects");
    brokers::redis_add(&mut redis, &name, 0..1).await;
    let first_gate = Arc::new(Semaphore::new(0));
    let (first_seen, mut first) = mpsc::unbounded_channel();
    let first_pipeline = fed_by(
        &cut_off,
        Record {
            seen: first_seen,
            gate: Some(first_gate.clone()),
        },
    )
    .start()
    .await
    .expect("starts");
    assert_eq!(next(&mut first).await, (0, 1), "the first instance has it");
    // Cut off for several leases: its renewals cannot reach the server.
    proxy.cut(25);
    let (second_seen, mut second) = mpsc::unbounded_channel();
    let second_pipeline = fed_by(
        &direct,
        Record {
            seen: second_seen,
            gate: None,
        },
    )
    .start()
    .await
    .expect("starts");
    assert_eq!(
        next(&mut second).await,
        (0, 2),
        "claimed after the lease, the server counting the second delivery"
    );
    wait_until("acked by the second", MINUTE, || {
        let mut redis = redis.clone();
        let name = name.clone();
        async move { brokers::redis_left(&mut redis, &name).await == 0 }
    })
    .await;
    // The first instance is back; its handler finishes now. Its ack would settle
    // nothing of its own: it is voided.
    wait_until("reconnected", MINUTE, || async {
        proxy.refused() == 25 && cut_off.state().connected
    })
    .await;
    first_gate.add_permits(1);
    wait_until("voided", MINUTE, || async { cut_off.state().voided == 1 }).await;
    let first_report = first_pipeline.drain(Duration::from_secs(30)).await;
    let second_report = second_pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(first_report.settled.acked, 1, "{first_report:?}");
    assert_eq!(second_report.settled.acked, 1, "{second_report:?}");
    let (first_state, second_state) = (cut_off.state(), direct.state());
    assert_eq!(
        (first_state.voided, first_state.acked, second_state.acked),
        (1, 0, 1),
        "{first_state:?} {second_state:?}"
    );
    assert_eq!(brokers::redis_left(&mut redis, &name).await, 0);
}
