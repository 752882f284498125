//! `gen-stage demo`: a pipeline that shows back-pressure and concurrency at work.

mod pipeline;
mod source;
mod view;

use std::io::IsTerminal;
use std::time::Duration;

use gen_stage::{BoxError, ExitReason};
use tokio::time::Instant;

pub(crate) use pipeline::Settings;

use self::pipeline::Pipeline;
use self::view::{Frame, View};
use crate::output::print_line;

/// How to read the view; printed above it, and by `gen-stage demo --help`.
pub(crate) const LEGEND: &str = "\
How to read the view (one row per stage):
  asked      events the stage has asked its producers for and not yet received
  owed       events its consumers have asked it for and not yet been sent
  buffered   events it holds that no consumer has asked for yet
  in flight  the workers' tasks running now, one per job
  waits      the share of its time the source had no demand to serve: near 100%,
             the workers set the pace and back-pressure holds the source back";

/// What the demo measured.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) jobs: u64,
    pub(crate) elapsed: Duration,
    pub(crate) peak_buffered: usize,
    pub(crate) peak_in_flight: usize,
    /// Tasks completed and running when the last job had left the processors and
    /// the last task had ended.
    pub(crate) completed: usize,
    pub(crate) in_flight_at_end: usize,
    /// The share of its time the source waited for demand.
    pub(crate) source_wait: Option<f64>,
    pub(crate) exactly_once: usize,
    pub(crate) missing: usize,
    pub(crate) duplicated: usize,
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
        print_line(format_args!(
            "  peak buffered:    {} events (in any one stage)",
            self.peak_buffered
        ));
        print_line(format_args!(
            "  peak concurrency: {} tasks",
            self.peak_in_flight
        ));
        print_line(format_args!(
            "  at the end:       {} tasks in flight, {} completed",
            self.in_flight_at_end, self.completed
        ));
        if let Some(wait) = self.source_wait {
            print_line(format_args!(
                "  source waiting:   {:.1}% of its time (no demand: back-pressure)",
                wait * 100.0
            ));
        }
        if self.missing == 0 && self.duplicated == 0 {
            print_line(format_args!(
                "  exactly once:     ok ({} jobs, each processed once)",
                self.exactly_once
            ));
        } else {
            print_line(format_args!(
                "  exactly once:     FAILED ({} once, {} never, {} more than once)",
                self.exactly_once, self.missing, self.duplicated
            ));
        }
    }

    pub(crate) fn passed(&self) -> bool {
        self.missing == 0 && self.duplicated == 0
    }
}

/// How often the view looks at the pipeline; more often once the jobs have all left
/// the processors, so that the last frame comes as soon as the last task ends.
const LOOK_EVERY: Duration = Duration::from_millis(200);
const DRAIN_LOOK_EVERY: Duration = Duration::from_millis(10);

pub(crate) async fn run(settings: Settings) -> Result<Summary, BoxError> {
    print_line(format_args!(
        "gen-stage demo: {} jobs -> {} processors (by partition) -> tasks of ~{} ms, at most {} per processor",
        settings.jobs,
        settings.processors,
        settings.task.as_millis(),
        settings.max_demand
    ));
    print_line(LEGEND);
    let started = Instant::now();
    let pipeline = pipeline::start(settings).await?;
    let live = std::io::stdout().is_terminal();
    let mut view = View::new(live, settings.jobs, settings.processors, started)?;
    let mut summary = Summary {
        jobs: settings.jobs,
        ..Summary::default()
    };
    let processors_done = async {
        for processor in &pipeline.processors {
            processor.stopped().await;
        }
    };
    tokio::pin!(processors_done);
    let mut draining = false;
    // The first tick would come at once, measuring rates over a moment: it is skipped.
    let mut interval = tokio::time::interval_at(Instant::now() + LOOK_EVERY, LOOK_EVERY);
    loop {
        tokio::select! {
            () = &mut processors_done, if !draining => {
                // Every job has reached the workers: what remains is their tasks.
                draining = true;
                interval = tokio::time::interval(DRAIN_LOOK_EVERY);
            }
            _ = interval.tick() => {}
        }
        let frame = look(&pipeline).await;
        summary.peak_in_flight = summary.peak_in_flight.max(frame.tasks.high_water_mark);
        let buffered = frame.stats.iter().map(|stats| stats.buffered);
        summary.peak_buffered = summary.peak_buffered.max(buffered.max().unwrap_or(0));
        // The workers' mailbox holds the processors' last jobs ahead of the question
        // `look` asked: no task running now means none is left to start.
        let last = draining && frame.tasks.running == 0;
        view.show(&frame, last);
        if last {
            summary.completed = frame.tasks.completed;
            summary.in_flight_at_end = frame.tasks.running;
            summary.source_wait = frame.source_wait;
            break;
        }
    }
    summary.elapsed = started.elapsed();
    pipeline.workers.stop(ExitReason::Normal).await?;
    pipeline.stop().await;
    view.finish();
    let (once, never, more) = pipeline.ledger.check();
    summary.exactly_once = once;
    summary.missing = never;
    summary.duplicated = more;
    Ok(summary)
}

/// The pipeline's state now.
async fn look(pipeline: &Pipeline) -> Frame {
    let tasks = pipeline.workers.count_children().await.unwrap_or_default();
    let stats = std::iter::once(pipeline.source.stats())
        .chain(pipeline.processors.iter().map(|p| p.stats()))
        .chain(std::iter::once(pipeline.workers.stats()))
        .collect();
    Frame {
        at: Instant::now(),
        tasks,
        stats,
        source_wait: pipeline.source_wait.fraction(),
    }
}
