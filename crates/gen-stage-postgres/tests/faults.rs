//! Connection loss, through a proxy of the test's own: the queue reconnects after its
//! backoff, and no job is lost.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_conformance::Proxy;
use gen_stage_pipeline::{
    Handler, Message, MessageId, PipelineBuilder, ProcessorContext, ProcessorOptions,
};
use gen_stage_postgres::tokio_postgres::config::Host;
use gen_stage_postgres::tokio_postgres::{Config, NoTls};
use gen_stage_postgres::{Backoff, PgQueue, PgQueueOptions, enqueue_batch};
use support::{OwnTable, client, count, eventually, url};
use tokio::sync::mpsc;

struct Record(mpsc::UnboundedSender<i64>);

impl Handler for Record {
    type Data = Vec<u8>;

    async fn handle_message(
        &self,
        message: &mut Message<Vec<u8>>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        if let Some(MessageId::Number(id)) = message.metadata().id {
            let _ = self.0.send(id as i64);
        }
        Ok(())
    }
}

/// A proxy to the server, and the client settings that go through it.
async fn proxied() -> (Proxy, Config) {
    let direct: Config = url().parse().expect("a valid URL");
    let host = match direct.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = direct.get_ports().first().copied().unwrap_or(5432);
    let upstream = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("the server's address")
        .next()
        .expect("an address");
    let proxy = Proxy::start(upstream).await.expect("a proxy");
    let mut through = Config::new();
    through.host("127.0.0.1").port(proxy.port());
    if let Some(user) = direct.get_user() {
        through.user(user);
    }
    if let Some(dbname) = direct.get_dbname() {
        through.dbname(dbname);
    }
    (proxy, through)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_stream_loses_no_job_and_the_queue_reconnects() {
    let Some(db) = client().await else { return };
    let table = OwnTable::new("outage");
    let (proxy, through) = proxied().await;
    let options = PgQueueOptions::new(table.0.clone())
        .lease(Duration::from_secs(2))
        .max_in_flight(50)
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(200),
        ));
    let queue = PgQueue::connect(through, NoTls, options)
        .await
        .expect("connects through the proxy");
    let payloads: Vec<Vec<u8>> = (0..300).map(|n| format!("{n}").into_bytes()).collect();
    let ids: HashSet<i64> = enqueue_batch(&db, &table.0, &payloads)
        .await
        .expect("enqueued")
        .into_iter()
        .collect();
    let (seen, mut handled) = mpsc::unbounded_channel();
    let pipeline = PipelineBuilder::new(Record(seen))
        .producer({
            let queue = queue.clone();
            move || queue.producer()
        })
        .processors(
            ProcessorOptions::new()
                .concurrency(2)
                .max_demand(10)
                .min_demand(5),
        )
        .source_health(queue.clone())
        .start()
        .await
        .expect("the pipeline starts");
    let mut distinct = HashSet::new();
    while distinct.len() < 100 {
        distinct.insert(next(&mut handled).await);
    }
    assert!(pipeline.snapshot().sources[0].connected);
    // Mid-stream: every connection cut, the next five refused.
    proxy.cut(5);
    while distinct.len() < ids.len() {
        distinct.insert(next(&mut handled).await);
    }
    assert_eq!(distinct, ids, "every job handled");
    // Outcomes lost with the connections leave their jobs to come due again: the
    // table empties once every job is acked, whatever the outage interrupted.
    let queued = format!("SELECT count(*) FROM \"{}\"", table.0.name());
    eventually(|| async { count(&db, &queued).await == 0 }).await;
    let source = pipeline.snapshot().sources.remove(0);
    assert_eq!(source.name, table.0.name());
    assert!(
        source.connected && source.last_error.is_some(),
        "{source:?}"
    );
    pipeline.drain(Duration::from_secs(30)).await;
    assert_eq!(proxy.refused(), 5, "the refused connections were tried");
    let state = queue.state();
    assert!(state.connected && state.reconnect_attempt == 0, "{state:?}");
    assert!(state.last_error.is_some(), "the outage is reported");
    let dead = format!("SELECT count(*) FROM \"{}_dead\"", table.0.name());
    assert_eq!(count(&db, &dead).await, 0);
}

/// The next job handled, within a minute: a guard against a hang (a job lost would
/// otherwise be waited for for ever).
async fn next(handled: &mut mpsc::UnboundedReceiver<i64>) -> i64 {
    tokio::time::timeout(Duration::from_secs(60), handled.recv())
        .await
        .expect("no job is lost")
        .expect("the pipeline runs")
}
