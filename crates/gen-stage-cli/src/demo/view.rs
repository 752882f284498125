//! The demo's view: on a terminal, a live redraw of each stage; otherwise, a line
//! every second.

use std::time::Duration;

use gen_stage::BoxError;
use gen_stage::stats::StageStats;
use gen_stage::supervision::TaskCounts;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

use crate::output::print_line;

/// How often the live view is redrawn.
const LIVE_EVERY: Duration = Duration::from_millis(200);
/// How often a line is printed without a terminal.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// The state of the pipeline at one instant.
pub(super) struct Frame {
    pub(super) at: Instant,
    /// The workers' tasks.
    pub(super) tasks: TaskCounts,
    /// The source's, each processor's, then the workers' counters.
    pub(super) stats: Vec<StageStats>,
    /// The share of its time the source has waited for demand.
    pub(super) source_wait: Option<f64>,
}

/// One stage's row.
struct Row {
    name: String,
    /// Its event count when the view was last shown, to measure its rate.
    last_count: u64,
    bar: Option<ProgressBar>,
}

pub(super) struct View {
    live: bool,
    started: Instant,
    jobs: u64,
    /// Keeps the live bars drawn.
    _multi: MultiProgress,
    progress: ProgressBar,
    rows: Vec<Row>,
    last_shown: Instant,
}

impl View {
    /// A live view if standard output is a terminal, lines otherwise.
    pub(super) fn new(
        live: bool,
        jobs: u64,
        processors: usize,
        started: Instant,
    ) -> Result<Self, BoxError> {
        let multi = MultiProgress::with_draw_target(if live {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        });
        let progress = multi.add(ProgressBar::new(jobs));
        progress.set_style(
            ProgressStyle::with_template(
                "{prefix:>13} [{bar:40}] {pos}/{len} jobs done, {elapsed}",
            )?
            .progress_chars("=> "),
        );
        progress.set_prefix("progress");
        let style = ProgressStyle::with_template("{prefix:>13} {msg}")?;
        let rows = std::iter::once("source".to_string())
            .chain((0..processors).map(|i| format!("processor {i}")))
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
        Ok(View {
            live,
            started,
            jobs,
            _multi: multi,
            progress,
            rows,
            last_shown: started,
        })
    }

    /// Shows `frame` if the view is due for it, and always when it is the `last`.
    pub(super) fn show(&mut self, frame: &Frame, last: bool) {
        let every = if self.live { LIVE_EVERY } else { LINE_EVERY };
        let since = frame.at.saturating_duration_since(self.last_shown);
        if !last && since < every {
            return;
        }
        self.last_shown = frame.at;
        let dt = since.as_secs_f64().max(1e-3);
        let wait = frame
            .source_wait
            .map_or_else(|| "-".to_string(), |wait| format!("{:.0}%", wait * 100.0));
        self.progress.set_position(frame.tasks.completed as u64);
        let mut line = format!(
            "t={:>5.1}s done {:>6}/{}",
            frame.at.duration_since(self.started).as_secs_f64(),
            frame.tasks.completed,
            self.jobs
        );
        for (row, stats) in self.rows.iter_mut().zip(&frame.stats) {
            let count = stats.events_emitted.max(stats.events_received);
            let rate = (count - row.last_count.min(count)) as f64 / dt;
            row.last_count = count;
            let extra = match row.name.as_str() {
                "source" => format!("  waits {wait:>4}"),
                "workers" => format!("  in flight {:>4}", frame.tasks.running),
                _ => String::new(),
            };
            if let Some(bar) = &row.bar {
                bar.set_message(format!(
                    "{rate:>9.0}/s  asked {:>5}  owed {:>5}  buffered {:>5}{extra}",
                    stats.demand_in, stats.demand_out, stats.buffered
                ));
            } else if row.name == "source" {
                line.push_str(&format!(
                    " | source: {rate:.0}/s buf {} waits {wait}",
                    stats.buffered
                ));
            } else if row.name == "workers" {
                line.push_str(&format!(
                    " | workers: {rate:.0}/s buf {} in-flight {}",
                    stats.buffered, frame.tasks.running
                ));
            }
        }
        if !self.live {
            print_line(&line);
        }
    }

    /// Leaves the last frame on the screen.
    pub(super) fn finish(&self) {
        for bar in self.rows.iter().filter_map(|row| row.bar.as_ref()) {
            bar.finish();
        }
        self.progress.finish();
    }
}
