//! A pipeline in a process of its own, for the conformance kit's crash scenarios:
//! `conformance-worker postgres URL TABLE RECORD_FILE CONSUMER` consumes the queue
//! table until it is killed, appending `id attempt` to the record file for each job
//! before the job is acked.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_conformance::record_line;
use gen_stage_pipeline::{
    Handler, Message, MessageId, PipelineBuilder, ProcessorContext, ProcessorOptions,
};
use gen_stage_postgres::{PgQueue, PgQueueOptions, QueueTable};

/// Records each job it processes, then lets the pipeline ack it.
struct Record(Mutex<std::fs::File>);

impl Handler for Record {
    type Data = Vec<u8>;

    async fn handle_message(
        &self,
        message: &mut Message<Vec<u8>>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        let Some(MessageId::Number(id)) = message.metadata().id else {
            return Err("a job without an id".into());
        };
        let line = record_line(id as i64, message.metadata().attempt);
        // One write per line: a kill leaves whole lines, or the last one cut short.
        let mut file = self
            .0
            .lock()
            .map_err(|_| "the record file's lock is poisoned")?;
        file.write_all(line.as_bytes())?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [broker, url, table, records, consumer] = args.as_slice() else {
        return Err("usage: conformance-worker postgres URL TABLE RECORD_FILE CONSUMER".into());
    };
    if broker != "postgres" {
        return Err(format!("unknown broker {broker}").into());
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(records)?;
    let options = PgQueueOptions::new(QueueTable::new(table.as_str())?)
        .consumer(consumer.as_str())
        .lease(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(500))
        .declare(false);
    let queue = PgQueue::connect_url(url, options).await?;
    let pipeline = PipelineBuilder::new(Record(Mutex::new(file)))
        .producer(move || queue.producer())
        .processors(
            ProcessorOptions::new()
                .concurrency(4)
                .max_demand(10)
                .min_demand(5),
        )
        .start()
        .await?;
    // Runs until killed; a signal to stop drains first.
    pipeline
        .drain_on_shutdown_signal(Duration::from_secs(10))?
        .await;
    Ok(())
}
