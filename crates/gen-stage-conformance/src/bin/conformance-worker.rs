//! A pipeline in a process of its own, for the conformance kit's crash scenarios:
//! `conformance-worker BROKER URL NAME RECORD_FILE INSTANCE` consumes the queue
//! table (`postgres`), the stream's durable consumer `workers` (`nats`), the
//! queue (`rabbitmq`) or the stream's consumer group `workers` (`redis`) named NAME
//! until it is killed, appending `id attempt` to the record file for each
//! message before the message is acked. INSTANCE names this worker (its lease owner,
//! its connection). It prints `ready` once its pipeline runs on a live connection.

use std::io::Write;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage::source::FetchProducer;
use gen_stage_conformance::record_line;
use gen_stage_nats::{JetStreamOptions, JetStreamSource};
use gen_stage_pipeline::{
    Handler, Message, MessageId, PipelineBuilder, ProcessorContext, ProcessorOptions,
};
use gen_stage_postgres::{PgQueue, PgQueueOptions, QueueTable};
use gen_stage_rabbitmq::{RabbitOptions, RabbitSource};
use gen_stage_redis::{RedisOptions, RedisSource};

/// How long each message's work takes.
const WORK: Duration = Duration::from_millis(2);

/// Records each message it processes, then lets the pipeline ack it.
struct Record<T>(Mutex<std::fs::File>, PhantomData<fn(T)>);

impl<T: Send + 'static> Handler for Record<T> {
    type Data = T;

    async fn handle_message(
        &self,
        message: &mut Message<T>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let id = match &message.metadata().id {
            Some(MessageId::Number(id)) => *id,
            // A Redis entry id, `<id>-1` (the kit adds them so), or a number.
            Some(MessageId::Text(id)) => id.split('-').next().unwrap_or(id).parse()?,
            None => return Err("a message without an id".into()),
        };
        let line = record_line(id as i64, message.metadata().attempt);
        // One write per line: a kill leaves whole lines, or the last one cut short.
        self.0
            .lock()
            .map_err(|_| "the record file's lock is poisoned")?
            .write_all(line.as_bytes())?;
        // Work that takes a while, as real work does: a kill finds messages in
        // every state (fetched, in a handler, recorded and not yet acked).
        tokio::time::sleep(WORK).await;
        Ok(())
    }
}

/// Runs a pipeline fed by `producer` until a signal drains it.
async fn run<T, F>(
    file: std::fs::File,
    producer: impl Fn() -> FetchProducer<F> + Send + Sync + 'static,
) -> Result<(), BoxError>
where
    T: Send + 'static,
    F: gen_stage::source::Fetch<Item = Message<T>>,
{
    let pipeline = PipelineBuilder::new(Record(Mutex::new(file), PhantomData))
        .producer(producer)
        .processors(
            ProcessorOptions::new()
                .concurrency(4)
                .max_demand(10)
                .min_demand(5),
        )
        .start()
        .await?;
    let drained = pipeline.drain_on_shutdown_signal(Duration::from_secs(10))?;
    // Connected and consuming: what a scenario waits for before it publishes.
    {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(b"ready\n")?;
        stdout.flush()?;
    }
    // Runs until killed; a signal to stop drains first.
    drained.await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [broker, url, name, records, instance] = args.as_slice() else {
        return Err(
            "usage: conformance-worker postgres|nats|rabbitmq|redis URL NAME RECORD_FILE INSTANCE"
                .into(),
        );
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(records)?;
    match broker.as_str() {
        "postgres" => {
            let options = PgQueueOptions::new(QueueTable::new(name.as_str())?)
                .consumer(instance.as_str())
                .lease(Duration::from_secs(2))
                .poll_interval(Duration::from_millis(500))
                .declare(false);
            let queue = PgQueue::connect_url(url, options).await?;
            run(file, move || queue.producer()).await
        }
        "nats" => {
            let options = JetStreamOptions::new(name.as_str(), "workers")
                .ack_wait(Duration::from_secs(2))
                .idle_wait(Duration::from_millis(500))
                .declare(false);
            let connect = gen_stage_nats::async_nats::ConnectOptions::new().name(instance.as_str());
            let source = JetStreamSource::connect(connect, url.as_str(), options).await?;
            let flushing = source.clone();
            run(file, move || source.producer()).await?;
            // The drained pipeline's last outcomes reach the server before the exit.
            Ok(flushing.flush(Duration::from_secs(10)).await?)
        }
        "rabbitmq" => {
            let options = RabbitOptions::new(name.as_str())
                .consumer_tag(instance.as_str())
                .max_in_flight(50)
                .declare(false);
            let source = RabbitSource::connect(url, options).await?;
            let closing = source.clone();
            run(file, move || source.producer()).await?;
            // The broker takes back what it pushed ahead and the pipeline never took.
            Ok(closing.close().await?)
        }
        "redis" => {
            let options = RedisOptions::new(name.as_str(), "workers", instance.as_str())
                .lease(Duration::from_secs(2))
                .block(Duration::from_millis(500))
                .max_in_flight(50)
                .declare(false);
            let source = RedisSource::connect(url.as_str(), options).await?;
            let closing = source.clone();
            run(file, move || source.producer()).await?;
            // What it still holds is claimable at once; the name is free.
            Ok(closing.close().await?)
        }
        other => Err(format!("unknown broker {other}").into()),
    }
}
