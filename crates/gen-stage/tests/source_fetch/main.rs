//! `from_fetch` / `FetchProducer`: while it runs (`running`: the credit bound on
//! fetches, prefetch, order, a finite source's end, waits after empty fetches) and
//! when things go wrong or end (`stopping`: retries, a source that says stop or
//! panics, and what is given back). Most tests fetch from a `ScriptedSource`
//! (`scripted_source`).

#[path = "../support/mod.rs"]
mod support;

mod running;
mod scripted_source;
mod stopping;

use gen_stage::ProducerRef;
use gen_stage::source::{Fetch, FetchProducer, MemorySource};

/// A queue holding `0..count`.
fn queue_of(count: u64) -> MemorySource<u64> {
    let queue = MemorySource::new();
    queue.extend(0..count);
    queue
}

/// Starts `producer`.
async fn start<S: Fetch>(producer: FetchProducer<S>) -> ProducerRef<FetchProducer<S>> {
    let started = gen_stage::producer(producer).start().await;
    started.expect("the producer starts")
}
