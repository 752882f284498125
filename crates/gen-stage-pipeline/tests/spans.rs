//! `tracing` spans around the callbacks and the acknowledgements carry the pipeline,
//! the stage, the batcher and the batch size. (Alone in its test binary: it sets the
//! process's default subscriber.)

mod support;

use std::sync::Arc;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    BatcherOptions, Handler, MemoryQueue, Message, ProcessorContext, ProcessorOptions,
};
use support::{Recorder, SECOND, Traced, start};

struct ToDb;

impl Handler for ToDb {
    type Data = u64;

    async fn handle_message(
        &self,
        message: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        message.put_batcher("db");
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn callbacks_and_acknowledgements_have_spans_with_their_context() {
    let traced = Arc::new(Traced::default());
    tracing::subscriber::set_global_default(Recorder(traced.clone())).expect("the only subscriber");
    let queue = MemoryQueue::new();
    queue.extend(0..5);
    let pipeline = start(ToDb, &queue, |b| {
        b.name("orders")
            .processors(ProcessorOptions::new().concurrency(1))
            .batcher("db", BatcherOptions::new().batch_size(5))
    })
    .await;
    queue.settled().await;
    pipeline.drain(SECOND).await;

    let seen = traced.spans.lock().expect("not poisoned").clone();
    let find = |name: &str| {
        seen.iter()
            .find(|(span, _)| span == name)
            .map(|(_, fields)| fields.clone())
            .unwrap_or_else(|| panic!("no {name} span in {seen:?}"))
    };
    let processor = find("processor");
    assert!(
        processor.contains("pipeline=orders") && processor.contains("index=0"),
        "{processor}"
    );
    find("handle_message");
    let batch = find("handle_batch");
    assert!(
        batch.contains("pipeline=orders")
            && batch.contains("batcher=db")
            && batch.contains("size=5"),
        "{batch}"
    );
    let ack = find("ack");
    assert!(
        ack.contains("pipeline=orders")
            && ack.contains("messages=")
            && ack.contains("acked=")
            && ack.contains("released=0"),
        "{ack}"
    );
}
