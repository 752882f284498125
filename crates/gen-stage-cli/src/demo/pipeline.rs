//! The demo's stages: synthetic jobs -> a partitioned pool of processors -> a
//! ConsumerSupervisor running one simulated I/O task per job.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use gen_stage::dispatcher::{Partition, PartitionDispatcher};
use gen_stage::source::SourceProducer;
use gen_stage::supervision::ConsumerSupervisor;
use gen_stage::{
    BoxError, ConsumerRef, DemandMode, ExitReason, ProducerConsumer, ProducerConsumerContext,
    ProducerConsumerRef, ProducerRef, SubscribeOptions, SubscriptionTag,
};

use super::source::{JobSource, SourceWait};

/// One unit of work.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) key: u64,
    /// How long its task takes.
    pub(crate) cost: Duration,
}

/// Makes `count` jobs from `seed`: keys spread over partitions, costs between half
/// and one and a half times `task`.
pub(crate) fn jobs(
    count: u64,
    task: Duration,
    seed: u64,
) -> impl Iterator<Item = Job> + Send + 'static {
    let mut state = seed | 1;
    (0..count).map(move |id| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let spread = state % 1000; // 0..1000 thousandths
        let cost = task.mul_f64(0.5 + spread as f64 / 1000.0);
        Job {
            id,
            key: state >> 16,
            cost,
        }
    })
}

/// Checks a job and passes it on (stands for parsing, enriching, ...).
pub(crate) struct Processor;

impl ProducerConsumer for Processor {
    type Input = Job;
    type Output = Job;
    type Message = ();

    async fn handle_events(
        &mut self,
        jobs: Vec<Job>,
        _: SubscriptionTag,
        _: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<Job>, BoxError> {
        Ok(jobs)
    }
}

/// Records how many times each job ran.
#[derive(Clone)]
pub(crate) struct Ledger(Arc<Vec<AtomicU8>>);

impl Ledger {
    pub(crate) fn new(jobs: u64) -> Self {
        Ledger(Arc::new((0..jobs).map(|_| AtomicU8::new(0)).collect()))
    }

    fn done(&self, id: u64) {
        if let Some(slot) = self.0.get(id as usize) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (jobs run exactly once, jobs never run, jobs run more than once)
    pub(crate) fn check(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for slot in self.0.iter() {
            match slot.load(Ordering::Relaxed) {
                0 => counts.1 += 1,
                1 => counts.0 += 1,
                _ => counts.2 += 1,
            }
        }
        counts
    }
}

/// The running pipeline.
pub(crate) struct Pipeline {
    pub(crate) source: ProducerRef<SourceProducer<JobSource>>,
    /// How long the source has waited for demand.
    pub(crate) source_wait: SourceWait,
    pub(crate) processors: Vec<ProducerConsumerRef<Processor>>,
    pub(crate) workers: ConsumerRef<ConsumerSupervisor<Job>>,
    pub(crate) ledger: Ledger,
}

/// What the demo runs, from the command line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) jobs: u64,
    pub(crate) processors: usize,
    pub(crate) max_demand: usize,
    pub(crate) task: Duration,
    pub(crate) seed: u64,
}

pub(crate) async fn start(settings: Settings) -> Result<Pipeline, BoxError> {
    let Settings {
        jobs: count,
        processors,
        max_demand,
        task,
        seed,
    } = settings;
    let ledger = Ledger::new(count);
    let source_wait = SourceWait::default();
    let partitions = processors as u64;
    let source = gen_stage::producer(SourceProducer::new(JobSource::new(
        jobs(count, task, seed),
        source_wait.clone(),
    )))
    .dispatcher(PartitionDispatcher::by_count(
        processors,
        move |job: &Job| (job.key % partitions) as usize,
    ))
    // Nothing goes out until the whole pipeline has subscribed: a first processor's
    // demand could otherwise drain a short source, which (and then the processors whose
    // partitions got nothing) would stop before the rest subscribed.
    .demand_mode(DemandMode::Accumulate)
    .start()
    .await?;
    let mut pool = Vec::new();
    for partition in 0..processors {
        let processor = gen_stage::producer_consumer(Processor)
            .subscribe_to(
                &source,
                SubscribeOptions::new()
                    .max_demand(max_demand * 2)
                    .with(Partition(partition)),
            )
            .start()
            .await?;
        pool.push(processor);
    }
    let done = ledger.clone();
    let supervisor = ConsumerSupervisor::new(move |job: Job| {
        let done = done.clone();
        async move {
            tokio::time::sleep(job.cost).await; // simulated I/O
            done.done(job.id);
            Ok::<(), BoxError>(())
        }
    })
    .shutdown(gen_stage::supervision::Shutdown::Wait);
    let mut workers = gen_stage::consumer(supervisor);
    for processor in &pool {
        // Transient: a processor that finishes normally does not stop the workers.
        let options = SubscribeOptions::new()
            .max_demand(max_demand)
            .cancel(gen_stage::CancelMode::Transient);
        workers = workers.subscribe_to(processor, options);
    }
    let workers = workers.start().await?;
    source.set_demand_mode(DemandMode::Forward)?;
    Ok(Pipeline {
        source,
        source_wait,
        processors: pool,
        workers,
        ledger,
    })
}

impl Pipeline {
    /// Stops what still runs (after an interruption).
    pub(crate) async fn stop(&self) {
        let _ = self.source.stop(ExitReason::Shutdown).await;
    }
}
