//! `gen-stage demo`: a pipeline that shows back-pressure and concurrency at work.

mod pipeline;

use std::io::IsTerminal;
use std::time::Duration;

use gen_stage::{BoxError, ExitReason, StageStats};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

pub(crate) use pipeline::Settings;

use crate::output::print_line;

/// One stage's row in the view.
struct Row {
    name: String,
    last_count: u64,
    bar: Option<ProgressBar>,
}

/// What the demo measured.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) jobs: u64,
    pub(crate) elapsed: Duration,
    pub(crate) peak_buffered: usize,
    pub(crate) peak_in_flight: usize,
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

fn counted(stats: &StageStats) -> u64 {
    stats.events_emitted.max(stats.events_received)
}

pub(crate) async fn run(settings: Settings) -> Result<Summary, BoxError> {
    print_line(format_args!(
        "gen-stage demo: {} jobs -> {} processors (by partition) -> tasks of ~{} ms, at most {} per processor",
        settings.jobs,
        settings.processors,
        settings.task.as_millis(),
        settings.max_demand
    ));
    let started = Instant::now();
    let pipeline = pipeline::start(settings).await?;
    let live = std::io::stdout().is_terminal();
    let multi = MultiProgress::with_draw_target(if live {
        ProgressDrawTarget::stdout()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:>13} {msg}")?;
    let progress = multi.add(ProgressBar::new(settings.jobs));
    progress.set_style(
        ProgressStyle::with_template("{prefix:>13} [{bar:40}] {pos}/{len} jobs done, {elapsed}")?
            .progress_chars("=> "),
    );
    progress.set_prefix("progress");
    let mut rows: Vec<Row> = std::iter::once("source".to_string())
        .chain((0..settings.processors).map(|i| format!("processor {i}")))
        .chain(std::iter::once("workers".to_string()))
        .map(|name| {
            let bar = live.then(|| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(name.clone());
                bar
            });
            Row {
                name,
                last_count: 0,
                bar,
            }
        })
        .collect();

    let mut summary = Summary {
        jobs: settings.jobs,
        ..Summary::default()
    };
    let tick = if live {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    };
    let mut last = Instant::now();
    let processors_done = async {
        for processor in &pipeline.processors {
            processor.stopped().await;
        }
    };
    tokio::pin!(processors_done);
    // The first tick would come at once, measuring rates over a moment: it is skipped.
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    loop {
        let finished = tokio::select! {
            _ = &mut processors_done => true,
            _ = interval.tick() => false,
        };
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64().max(1e-3);
        last = now;
        let counts = pipeline.workers.count_children().await.unwrap_or_default();
        summary.peak_in_flight = summary.peak_in_flight.max(counts.high_water_mark);
        progress.set_position(counts.completed as u64);
        let mut stats: Vec<StageStats> = vec![pipeline.source.stats()];
        stats.extend(pipeline.processors.iter().map(|p| p.stats()));
        stats.push(pipeline.workers.stats());
        let mut line = format!(
            "t={:>5.1}s done {:>6}/{}",
            started.elapsed().as_secs_f64(),
            counts.completed,
            settings.jobs
        );
        for (row, stats) in rows.iter_mut().zip(&stats) {
            let count = counted(stats);
            let rate = (count - row.last_count.min(count)) as f64 / dt;
            row.last_count = count;
            summary.peak_buffered = summary.peak_buffered.max(stats.buffered);
            let in_flight = if row.name == "workers" {
                format!(" in flight {:>4}", counts.running)
            } else {
                String::new()
            };
            let text = format!(
                "{rate:>9.0}/s  asked {:>5}  owed {:>5}  buffered {:>5}{in_flight}",
                stats.demand_in, stats.demand_out, stats.buffered
            );
            if let Some(bar) = &row.bar {
                bar.set_message(text);
            } else if row.name == "source" || row.name == "workers" {
                line.push_str(&format!(
                    " | {}: {:.0}/s buf {}",
                    row.name, rate, stats.buffered
                ));
            }
            if row.name == "workers" && !live {
                line.push_str(&format!(" in-flight {}", counts.running));
            }
        }
        if !live && (finished || started.elapsed() >= tick) {
            print_line(&line);
        }
        if finished {
            break;
        }
    }
    // Every job has reached the workers: let the running tasks finish.
    pipeline.workers.stop(ExitReason::Normal).await?;
    pipeline.stop().await;
    progress.set_position(settings.jobs.min(pipeline.ledger.check().0 as u64));
    for row in &rows {
        if let Some(bar) = &row.bar {
            bar.finish();
        }
    }
    progress.finish();
    summary.elapsed = started.elapsed();
    let (once, never, more) = pipeline.ledger.check();
    summary.exactly_once = once;
    summary.missing = never;
    summary.duplicated = more;
    Ok(summary)
}
