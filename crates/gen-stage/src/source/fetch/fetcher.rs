//! The task that fetches for a [`FetchProducer`](super::FetchProducer): it owns the
//! source, fetches one `max` at a time as the stage asks, waits as the source says
//! after empty or failed fetches, and gives back what the stage could not emit.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Fetch, Fetched, OnFetchError};
use crate::exit::ExitReason;
use crate::runtime::{AbortOnDrop, catch};

/// What the stage asks of its task.
pub(super) enum Command<S: Fetch> {
    /// Fetch up to this many items (more than 0). The stage sends the next only once
    /// the task replied to this one.
    Fetch(usize),
    /// Cancel the fetch in progress, give back `kept`, then the items of the replies
    /// the stage did not take, then what the cancelled fetch had pushed, and end.
    Finish {
        kept: Vec<S::Item>,
        replies: mpsc::UnboundedReceiver<Reply<S>>,
    },
}

/// What the task answers a [`Command::Fetch`]. The items travel on this channel, not in
/// the stage's mailbox: a stage that stops hands the channel back with what it holds,
/// so that no item is lost with the mailbox.
pub(super) enum Reply<S: Fetch> {
    /// Items (at most the `max` asked), and whether the source has ended.
    Fetched { items: Vec<S::Item>, ended: bool },
    /// The source said [`OnFetchError::Stop`]: the stage stops with this error.
    Failed(S::Error),
    /// The source panicked: the stage stops with this reason.
    Panicked(ExitReason),
}

/// The stage's end of its task.
pub(super) struct Fetcher<S: Fetch> {
    pub(super) commands: mpsc::UnboundedSender<Command<S>>,
    pub(super) replies: mpsc::UnboundedReceiver<Reply<S>>,
    pub(super) task: Task,
}

/// The task: it is aborted when this is dropped (the stage stopped, or was killed).
pub(super) struct Task {
    handle: JoinHandle<()>,
    _abort: AbortOnDrop,
}

impl Task {
    /// Waits for the task to end; a panic it did not catch is returned as the reason.
    pub(super) async fn join(mut self) -> Result<(), ExitReason> {
        (&mut self.handle)
            .await
            .map_err(|error| match error.try_into_panic() {
                Ok(payload) => ExitReason::from_panic(&*payload),
                Err(_) => ExitReason::Killed,
            })
    }
}

/// Starts the task over `source`; it calls `wake` after each reply it sends.
pub(super) fn spawn<S: Fetch>(source: S, wake: impl Fn() + Send + 'static) -> Fetcher<S> {
    let (commands, received) = mpsc::unbounded_channel();
    let (replier, replies) = mpsc::unbounded_channel();
    let handle = tokio::spawn(run(source, received, replier, wake));
    let abort = AbortOnDrop::new(handle.abort_handle());
    Fetcher {
        commands,
        replies,
        task: Task {
            handle,
            _abort: abort,
        },
    }
}

/// The pace the source sets: failures and empty fetches in a row, and the delay owed
/// before the next fetch.
#[derive(Debug, Default)]
struct Pace {
    failures: u32,
    failures_total: u64,
    empties: u32,
    retry_after: Option<Duration>,
}

/// How a [`fill`] ended.
enum Filled<E> {
    Items,
    End,
    Failed(E),
}

async fn run<S: Fetch>(
    mut source: S,
    mut commands: mpsc::UnboundedReceiver<Command<S>>,
    replies: mpsc::UnboundedSender<Reply<S>>,
    wake: impl Fn(),
) {
    // What the fetch in progress pushed; after a failure or a panic, what it had pushed.
    let mut into = Vec::new();
    let mut pace = Pace::default();
    let mut fetching: Option<usize> = None;
    // The source failed or panicked: it is not fetched from again.
    let mut broken = false;
    loop {
        let command = match fetching {
            None => commands.recv().await,
            Some(max) => {
                let filled = tokio::select! {
                    biased;
                    // Dropping the fill cancels the fetch: what it pushed stays in `into`.
                    command = commands.recv() => Err(command),
                    filled = catch(fill(&mut source, max, &mut into, &mut pace)) => Ok(filled),
                };
                match filled {
                    Err(command) => command,
                    Ok(filled) => {
                        fetching = None;
                        let reply = match filled {
                            Ok(Filled::Items) => fetched(&mut source, max, &mut into, false).await,
                            Ok(Filled::End) => fetched(&mut source, max, &mut into, true).await,
                            Ok(Filled::Failed(error)) => Reply::Failed(error),
                            Err(panic) => Reply::Panicked(panic),
                        };
                        broken = !matches!(reply, Reply::Fetched { .. });
                        // The stage holds the receiver until it hands it back.
                        let _ = replies.send(reply);
                        wake();
                        continue;
                    }
                }
            }
        };
        match command {
            Some(Command::Fetch(max)) if !broken && max > 0 => fetching = Some(max),
            Some(Command::Fetch(_)) => {}
            Some(Command::Finish {
                kept,
                replies: mut unread,
            }) => {
                let mut items = kept;
                while let Ok(reply) = unread.try_recv() {
                    if let Reply::Fetched { items: more, .. } = reply {
                        items.extend(more);
                    }
                }
                items.append(&mut into);
                give_back(&mut source, items).await;
                return;
            }
            // The stage is gone without a word (it was killed): it aborts this task.
            None => return,
        }
    }
}

/// Fetches until the source gives items, ends, or fails for good: after an empty
/// fetch it waits [`Fetch::idle`], after a failure what [`Fetch::on_error`] says.
async fn fill<S: Fetch>(
    source: &mut S,
    max: usize,
    into: &mut Vec<S::Item>,
    pace: &mut Pace,
) -> Filled<S::Error> {
    loop {
        if let Some(delay) = pace.retry_after.take() {
            tokio::time::sleep(delay).await;
        }
        let fetched = source.fetch(max.saturating_sub(into.len()), into).await;
        match fetched {
            Ok(Fetched::End) => return Filled::End,
            Ok(Fetched::More) => {
                pace.failures = 0;
                if !into.is_empty() {
                    pace.empties = 0;
                    return Filled::Items;
                }
                pace.empties = pace.empties.saturating_add(1);
                source.idle(pace.empties).await;
            }
            Err(error) => {
                pace.failures = pace.failures.saturating_add(1);
                pace.failures_total = pace.failures_total.saturating_add(1);
                let attempt = pace.failures;
                match source.on_error(&error, attempt) {
                    OnFetchError::Retry { after } => {
                        tracing::warn!(
                            %error,
                            attempt,
                            failures = pace.failures_total,
                            retry_in = ?after,
                            "fetch failed; retrying"
                        );
                        pace.retry_after = Some(after);
                        // What it pushed before failing goes out now; the delay
                        // comes before the next fetch.
                        if !into.is_empty() {
                            return Filled::Items;
                        }
                    }
                    OnFetchError::Stop => {
                        tracing::error!(
                            %error,
                            attempt,
                            failures = pace.failures_total,
                            "fetch failed; stopping"
                        );
                        return Filled::Failed(error);
                    }
                }
            }
        }
    }
}

/// The reply to a fetch that pushed `into`: its first `max` items (the rest, pushed
/// against the contract, are given back at once).
async fn fetched<S: Fetch>(
    source: &mut S,
    max: usize,
    into: &mut Vec<S::Item>,
    ended: bool,
) -> Reply<S> {
    if into.len() > max {
        let excess = into.split_off(max);
        tracing::warn!(
            max,
            excess = excess.len(),
            "the source pushed more than asked; giving back the excess"
        );
        give_back(source, excess).await;
    }
    Reply::Fetched {
        items: std::mem::take(into),
        ended,
    }
}

/// Gives `items` back to the source, if there are any; a panic is logged.
async fn give_back<S: Fetch>(source: &mut S, items: Vec<S::Item>) {
    if items.is_empty() {
        return;
    }
    let count = items.len();
    tracing::debug!(count, "giving back fetched items");
    if let Err(panic) = catch(source.give_back(items)).await {
        tracing::error!(count, "give_back panicked: {panic}");
    }
}
