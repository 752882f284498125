//! The demo's view of the pipeline's snapshots: on a terminal, a live redraw of each
//! stage; otherwise, a line every second.

use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::{PipelineSnapshot, StageLayer, StageSnapshot};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

use crate::output::print_line;

/// How often the live view is redrawn.
const LIVE_EVERY: Duration = Duration::from_millis(200);
/// How often a line is printed without a terminal.
const LINE_EVERY: Duration = Duration::from_secs(1);

/// Jobs done for good: acked, or dead-lettered.
pub(super) fn done(snapshot: &PipelineSnapshot) -> u64 {
    snapshot.counts.settled.acked + snapshot.counts.settled.rejected
}

/// The processors' busy share, averaged over them.
pub(super) fn processors_busy(snapshot: &PipelineSnapshot) -> f64 {
    let busy: Vec<f64> = snapshot
        .stages
        .iter()
        .filter(|stage| stage.layer == StageLayer::Processor)
        .map(|stage| stage.busy)
        .collect();
    busy.iter().sum::<f64>() / busy.len().max(1) as f64
}

/// Messages in the processors' callbacks now.
fn processors_in_hand(snapshot: &PipelineSnapshot) -> u64 {
    snapshot
        .stages
        .iter()
        .filter(|stage| stage.layer == StageLayer::Processor)
        .map(|stage| stage.in_flight)
        .sum()
}

pub(super) struct View {
    live: bool,
    started: Instant,
    jobs: u64,
    /// Keeps the live bars drawn.
    multi: MultiProgress,
    progress: ProgressBar,
    /// The pipeline's counts and rate limit, under the progress bar.
    counts: Option<ProgressBar>,
    /// One per stage, made from the first snapshot.
    rows: Vec<ProgressBar>,
    last_shown: Instant,
}

impl View {
    /// A live view if standard output is a terminal, lines otherwise.
    pub(super) fn new(live: bool, jobs: u64, started: Instant) -> Result<Self, BoxError> {
        let multi = MultiProgress::with_draw_target(if live {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        });
        let progress = multi.add(ProgressBar::new(jobs));
        progress.set_style(
            ProgressStyle::with_template(
                "{prefix:>26} [{bar:40}] {pos}/{len} jobs done, {elapsed}",
            )?
            .progress_chars("=> "),
        );
        progress.set_prefix("progress");
        let counts = live.then(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(Self::row_style());
            bar.set_prefix("outcomes");
            bar
        });
        Ok(View {
            live,
            started,
            jobs,
            multi,
            progress,
            counts,
            rows: Vec::new(),
            last_shown: started,
        })
    }

    fn row_style() -> ProgressStyle {
        ProgressStyle::with_template("{prefix:>26} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
    }

    /// Shows `snapshot` if the view is due for it, and always when it is the `last`.
    pub(super) fn show(&mut self, snapshot: &PipelineSnapshot, at: Instant, last: bool) {
        let every = if self.live { LIVE_EVERY } else { LINE_EVERY };
        if !last && at.saturating_duration_since(self.last_shown) < every {
            return;
        }
        self.last_shown = at;
        let done = done(snapshot);
        self.progress.set_position(done);
        let settled = &snapshot.counts.settled;
        let limit = snapshot.rate_limit.as_ref().map(|state| {
            format!(
                "  rate limit {}/{:?} ({} left in this window)",
                state.limit.allowed(),
                state.limit.interval(),
                state.remaining
            )
        });
        if !self.live {
            print_line(format_args!(
                "t={:>5.1}s done {done:>6}/{} | acked {} retried {} dead-lettered {} | in hand {} | processors busy {:.0}%{}",
                at.duration_since(self.started).as_secs_f64(),
                self.jobs,
                settled.acked,
                settled.retried,
                settled.rejected,
                processors_in_hand(snapshot),
                processors_busy(snapshot) * 100.0,
                limit.unwrap_or_default(),
            ));
            return;
        }
        if let Some(counts) = &self.counts {
            counts.set_message(format!(
                "acked {}  retried {}  dead-lettered {}  released {}  restarts {}{}",
                settled.acked,
                settled.retried,
                settled.rejected,
                settled.released,
                snapshot.restarts,
                limit.unwrap_or_default()
            ));
        }
        if self.rows.is_empty() {
            self.rows = snapshot
                .stages
                .iter()
                .map(|stage| {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(Self::row_style());
                    bar.set_prefix(stage.name.clone());
                    bar
                })
                .collect();
        }
        for (bar, stage) in self.rows.iter().zip(&snapshot.stages) {
            bar.set_message(row(stage));
        }
    }

    /// Leaves the last frame on the screen.
    pub(super) fn finish(&self) {
        for bar in self.rows.iter().chain(&self.counts) {
            bar.finish();
        }
        self.progress.finish();
    }
}

/// One stage's columns.
fn row(stage: &StageSnapshot) -> String {
    format!(
        "{:>9.0}/s  asked {:>5}  owed {:>5}  buffered {:>5}  in hand {:>5}  busy {:>3.0}%",
        stage.messages_per_second,
        stage.demand_asked,
        stage.demand_owed,
        stage.buffered,
        stage.in_flight,
        stage.busy * 100.0
    )
}
