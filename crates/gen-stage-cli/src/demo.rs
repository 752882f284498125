//! `gen-stage demo`: an acknowledged pipeline (gen-stage-pipeline) fed by an in-memory
//! queue, showing back-pressure, concurrency, retries and batching at work.

#[cfg(feature = "nats")]
mod nats;
#[cfg(any(
    feature = "postgres",
    feature = "nats",
    feature = "rabbitmq",
    feature = "redis"
))]
mod payload;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
#[cfg(feature = "redis")]
mod redis;
mod source;
mod view;
mod work;

pub(crate) use source::SourceKind;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{BatcherOptions, Pipeline, ProcessorOptions, RateLimit, RetryPolicy};
use tokio::time::Instant;

use self::source::Source;
use self::view::View;
use self::work::{BATCHER, Ledger, Work, jobs};
use crate::output::print_line;

/// How to read the view; printed above it, and by `gen-stage demo --help`.
pub(crate) const LEGEND: &str = "\
How to read the view (one row per stage of the pipeline):
  asked      messages the stage has asked of the stages before it and not received
  owed       messages the stages after it have asked of it and not been sent
  buffered   messages it holds that no stage after it has asked for yet
  in hand    messages in its callback now (a batcher: in its open batches)
  busy       the share of the last seconds it spent in callbacks: near 100% on the
             processors, they set the pace and back-pressure holds the producer back";

/// What the demo runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) jobs: u64,
    pub(crate) processors: usize,
    pub(crate) max_demand: usize,
    /// The average time of a job's request.
    pub(crate) task: Duration,
    pub(crate) batch_size: usize,
    /// The share of jobs, in percent, that fail at their first attempt.
    pub(crate) fail_percent: u64,
    /// At most this many jobs taken in per second, if set.
    pub(crate) rate_limit: Option<u64>,
    pub(crate) seed: u64,
    /// Where the jobs wait.
    pub(crate) source: SourceKind,
    /// Keep the queue the run made on the broker (and what is left in it).
    pub(crate) keep: bool,
}

/// What the demo measured.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) jobs: u64,
    pub(crate) elapsed: Duration,
    pub(crate) acked: u64,
    pub(crate) retried: u64,
    pub(crate) dead_lettered: u64,
    /// The most messages the processors held in their callbacks at once.
    pub(crate) peak_in_hand: usize,
    /// The processors' busy share over the last seconds of the run.
    pub(crate) processors_busy: f64,
    /// Messages the queue still had in flight after the drain, and outcomes it got
    /// for messages not in flight (both 0 when nothing is lost or doubled).
    pub(crate) queue_in_flight: usize,
    pub(crate) stray_outcomes: u64,
    pub(crate) exactly_once: usize,
    pub(crate) missing: usize,
    pub(crate) duplicated: usize,
    /// A signal (SIGTERM, Ctrl-C) drained the run before every job was done.
    pub(crate) interrupted: bool,
    /// The broker's queue the run kept (`--keep`), by name.
    pub(crate) kept: Option<String>,
}

impl Summary {
    pub(crate) fn print(&self) {
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        print_line("summary:");
        print_line(format_args!("  jobs:             {}", self.jobs));
        print_line(format_args!("  elapsed:          {seconds:.2} s"));
        print_line(format_args!(
            "  throughput:       {:.0} jobs/s",
            self.jobs as f64 / seconds
        ));
        print_line(format_args!("  acked:            {}", self.acked));
        print_line(format_args!(
            "  retried:          {} (failed at their first attempt, delivered again)",
            self.retried
        ));
        print_line(format_args!("  dead-lettered:    {}", self.dead_lettered));
        print_line(format_args!(
            "  peak in hand:     {} messages in the processors' callbacks at once",
            self.peak_in_hand
        ));
        print_line(format_args!(
            "  processors busy:  {:.1}% of their time (the rest: waiting for messages)",
            self.processors_busy * 100.0
        ));
        print_line(format_args!(
            "  queue:            {} in flight, {} stray outcomes",
            self.queue_in_flight, self.stray_outcomes
        ));
        if self.interrupted {
            print_line(format_args!(
                "  interrupted:      drained at a signal; {} jobs left in the queue",
                self.left()
            ));
        }
        if let Some(kept) = &self.kept {
            print_line(format_args!("  kept:             {kept}"));
        }
        if self.interrupted && self.passed() {
            print_line(format_args!(
                "  exactly once:     ok so far ({} jobs written once, none twice)",
                self.exactly_once
            ));
        } else if self.passed() {
            print_line(format_args!(
                "  exactly once:     ok ({} jobs, each written once)",
                self.exactly_once
            ));
        } else {
            print_line(format_args!(
                "  exactly once:     FAILED ({} once, {} never, {} more than once)",
                self.exactly_once, self.missing, self.duplicated
            ));
        }
    }

    /// Jobs neither acked nor dead-lettered: still in the queue.
    pub(crate) fn left(&self) -> u64 {
        self.jobs
            .saturating_sub(self.acked)
            .saturating_sub(self.dead_lettered)
    }

    /// Every job written and acked exactly once; after a signal, every job acked was
    /// written once and the rest wait in the queue, none in flight.
    pub(crate) fn passed(&self) -> bool {
        let settled = self.duplicated == 0 && self.queue_in_flight == 0 && self.stray_outcomes == 0;
        if self.interrupted {
            return settled && self.exactly_once as u64 >= self.acked;
        }
        settled && self.missing == 0 && self.acked == self.jobs
    }
}

/// How often the view looks at the pipeline.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// How long the final drain may take.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

pub(crate) async fn run(settings: Settings) -> Result<Summary, BoxError> {
    print_line(format_args!(
        "gen-stage demo: {} jobs in a queue -> {} processors (requests of ~{} ms, at most {} each at once) -> batcher {BATCHER:?} ({} per batch) -> ack",
        settings.jobs,
        settings.processors,
        settings.task.as_millis(),
        settings.max_demand,
        settings.batch_size,
    ));
    print_line(LEGEND);
    let started = Instant::now();
    let jobs = jobs(
        settings.jobs,
        settings.task,
        settings.fail_percent,
        settings.seed,
    );
    let source = Source::new(settings.source, jobs.collect()).await?;
    let ledger = Arc::new(Ledger::new(settings.jobs));
    let pipeline = start(&settings, &source, &ledger).await?;
    let live = std::io::stdout().is_terminal();
    let mut view = View::new(live, settings.jobs, started)?;
    let mut settled = source.settled();
    // SIGTERM or Ctrl-C drains the pipeline: what it holds is finished and acked,
    // the rest stays in the queue.
    let on_signal = pipeline.drain_on_shutdown_signal(DRAIN_DEADLINE)?;
    tokio::pin!(on_signal);
    // The first tick would come at once: it is skipped.
    let mut interval = tokio::time::interval_at(Instant::now() + LOOK_EVERY, LOOK_EVERY);
    let drained_at_signal = loop {
        tokio::select! {
            () = &mut settled => break None,
            report = &mut on_signal => break Some(report),
            _ = interval.tick() => view.show(&pipeline.snapshot(), Instant::now(), false),
        }
    };
    let elapsed = started.elapsed();
    // The last frame shows the pipeline as it finished its work, before the drain
    // stops its stages.
    let at_the_end = pipeline.snapshot();
    view.show(&at_the_end, Instant::now(), true);
    view.finish();
    let interrupted = drained_at_signal.is_some();
    let report = match drained_at_signal {
        Some(report) => report,
        None => pipeline.drain(DRAIN_DEADLINE).await,
    };
    let (once, never, more) = ledger.check();
    drop(settled);
    let (queue_in_flight, stray_outcomes) = source.leftovers();
    let kept = source.finish(settings.keep).await?;
    Ok(Summary {
        jobs: settings.jobs,
        elapsed,
        acked: report.settled.acked,
        retried: report.settled.retried,
        dead_lettered: report.settled.rejected,
        peak_in_hand: ledger.peak_in_hand(),
        processors_busy: view::processors_busy(&at_the_end),
        queue_in_flight,
        stray_outcomes,
        exactly_once: once,
        missing: never,
        duplicated: more,
        interrupted,
        kept,
    })
}

/// The pipeline: the queue's producer, the processors, one batcher, acks to the queue.
async fn start(
    settings: &Settings,
    source: &Source,
    ledger: &Arc<Ledger>,
) -> Result<Pipeline<work::Job>, BoxError> {
    let work = Work {
        ledger: ledger.clone(),
        write: settings.task / 5,
    };
    let mut builder = source
        .feed(Pipeline::builder(work).name("demo"))
        .processors(
            ProcessorOptions::new()
                .concurrency(settings.processors)
                .max_demand(settings.max_demand),
        )
        .batcher(
            BATCHER,
            BatcherOptions::new()
                .batch_size(settings.batch_size)
                .batch_timeout(Duration::from_millis(200)),
        )
        .retry(
            RetryPolicy::new()
                .first_delay(Duration::from_millis(100))
                .max_attempts(3),
        );
    if let Some(per_second) = settings.rate_limit {
        builder = builder.rate_limit(RateLimit::new(per_second, Duration::from_secs(1)));
    }
    Ok(builder.start().await?)
}
