//! What the pipeline's tests share: a queue-fed pipeline, and checks of the queue's
//! own view of the messages (it is the broker of these tests).

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{
    Handler, MemoryQueue, Message, Pipeline, PipelineBuilder, PipelineReport, ProcessorContext,
};

pub const SECOND: Duration = Duration::from_secs(1);

/// Accepts every message.
pub struct Accept;

impl Handler for Accept {
    type Data = u64;

    async fn handle_message(
        &self,
        _: &mut Message<u64>,
        _: &ProcessorContext,
    ) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A pipeline fed by `queue`, configured by `configure`.
pub async fn start<H: Handler<Data = u64>>(
    handler: H,
    queue: &MemoryQueue<u64>,
    configure: impl FnOnce(PipelineBuilder<H>) -> PipelineBuilder<H>,
) -> Pipeline<u64> {
    let source = queue.clone();
    let builder = Pipeline::builder(handler).producer(move || source.producer());
    configure(builder)
        .start()
        .await
        .expect("the pipeline starts")
}

/// The queue has nothing in flight, and never got an outcome twice.
pub fn assert_settled_once(queue: &MemoryQueue<u64>) {
    assert_eq!(queue.in_flight(), 0, "messages still in flight");
    assert_eq!(
        queue.stray_outcomes(),
        0,
        "outcomes for messages not in flight"
    );
}

/// Every message taken in ended in exactly one outcome.
pub fn assert_adds_up(report: &PipelineReport) {
    assert_eq!(report.settled.total(), report.taken_in, "{report:?}");
}

/// A record of calls, in order.
#[derive(Debug)]
pub struct Log<T>(Mutex<Vec<T>>);

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log(Mutex::new(Vec::new()))
    }
}

impl<T: Clone> Log<T> {
    pub fn push(&self, item: T) {
        self.0.lock().expect("not poisoned").push(item);
    }

    pub fn take(&self) -> Vec<T> {
        self.0.lock().expect("not poisoned").clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }
}

/// What a [`Recorder`] saw: spans as they were made, and events, each with its name
/// (an event's is its message) and its fields as text.
#[derive(Debug, Default)]
pub struct Traced {
    pub spans: Mutex<Vec<(String, String)>>,
    pub events: Mutex<Vec<(tracing::Level, String)>>,
    next: AtomicU64,
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

/// A `tracing` subscriber that records into a shared [`Traced`].
pub struct Recorder(pub Arc<Traced>);

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = Fields(String::new());
        span.record(&mut fields);
        let name = span.metadata().name().to_owned();
        self.0
            .spans
            .lock()
            .expect("not poisoned")
            .push((name, fields.0));
        tracing::span::Id::from_u64(self.0.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let level = *event.metadata().level();
        self.0
            .events
            .lock()
            .expect("not poisoned")
            .push((level, fields.0));
    }

    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
