//! `tracing` spans around the callbacks and the acknowledgements carry the pipeline,
//! the stage, the batcher and the batch size. (Alone in its test binary: it sets the
//! process's default subscriber.)

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gen_stage::BoxError;
use gen_stage_pipeline::{
    BatcherOptions, Handler, MemoryQueue, Message, ProcessorContext, ProcessorOptions,
};
use support::{SECOND, start};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records each new span: its name and its fields as text.
#[derive(Default)]
struct Spans {
    seen: Mutex<Vec<(String, String)>>,
    next: AtomicU64,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

/// The subscriber, sharing its record with the test.
struct Recorder(Arc<Spans>);

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = Fields(String::new());
        span.record(&mut fields);
        let name = span.metadata().name().to_owned();
        self.0
            .seen
            .lock()
            .expect("not poisoned")
            .push((name, fields.0));
        Id::from_u64(self.0.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

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
    let spans = Arc::new(Spans::default());
    tracing::subscriber::set_global_default(Recorder(spans.clone())).expect("the only subscriber");
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

    let seen = spans.seen.lock().expect("not poisoned").clone();
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
        ack.contains("pipeline=orders") && ack.contains("messages="),
        "{ack}"
    );
}
