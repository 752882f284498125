//! A `Fetch` source for the `from_fetch` tests: a `MemorySource` queue that follows a
//! script of turns (hang, fail, panic, push too much, wait for a gate) and records
//! every call, every item it handed out and every item given back. Past 1000 calls (a
//! busy loop) it stops answering.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gen_stage::source::{Fetch, Fetched, MemorySource, OnFetchError};
use gen_stage_test::{Gate, Recorded};
use tokio::time::Instant;

/// What the source does on one fetch call; once the script is done, it fetches from
/// the queue as a `MemorySource` does.
pub(crate) enum Turn {
    /// Fetch from the queue.
    Queue,
    /// Push up to this many from the queue, then never return.
    PushThenHang(usize),
    /// Push up to this many from the queue, then fail (fatal or not).
    PushThenFail(usize, Failure),
    /// Wait for a pass of the gate, then fetch from the queue.
    WaitFor(Gate),
    /// Push this many from the queue whatever `max` is.
    Greedy(usize),
    /// Panic.
    Panic,
}

/// A fetch's error: `on_error` stops the stage on a fatal one, and backs off otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    Passing,
    Fatal,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Passing => f.write_str("the broker is busy"),
            Failure::Fatal => f.write_str("the credentials were revoked"),
        }
    }
}

impl std::error::Error for Failure {}

/// One fetch call, as the source saw it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call {
    pub(crate) max: usize,
    /// Items handed out before this call and not given back.
    pub(crate) outstanding: usize,
    /// What the test had asked in all when the call started.
    pub(crate) asked: usize,
    pub(crate) at: Instant,
}

/// What a [`ScriptedSource`] records, shared with the test.
#[derive(Clone, Default)]
pub(crate) struct FetchLog {
    pub(crate) calls: Recorded<Call>,
    /// Each `give_back`'s items.
    pub(crate) given_back: Recorded<Vec<u64>>,
    /// The `attempt` of each `on_error` call.
    pub(crate) attempts: Recorded<u32>,
    /// Each `idle` call's count of empty fetches.
    pub(crate) idles: Recorded<u32>,
    /// What the test asked in all: it adds to it before each ask.
    pub(crate) asked: Arc<AtomicUsize>,
    handed_out: Arc<AtomicUsize>,
}

impl FetchLog {
    /// Records that the test asks `demand` more.
    pub(crate) fn ask(&self, demand: usize) {
        self.asked.fetch_add(demand, Ordering::SeqCst);
    }

    /// The `max` of each call so far.
    pub(crate) fn maxes(&self) -> Vec<usize> {
        self.calls
            .read(|calls| calls.iter().map(|call| call.max).collect())
    }

    /// Every item given back, in order.
    pub(crate) fn all_given_back(&self) -> Vec<u64> {
        self.given_back.read(|backs| backs.concat())
    }
}

/// More fetches than any test makes: a producer that fetches in a busy loop.
const BUSY: usize = 1000;

/// A queue of numbers behind a script; see the module's doc.
pub(crate) struct ScriptedSource {
    queue: MemorySource<u64>,
    script: Arc<Mutex<VecDeque<Turn>>>,
    log: FetchLog,
}

impl ScriptedSource {
    /// A source over `queue` that plays `script` first.
    pub(crate) fn new(queue: &MemorySource<u64>, script: Vec<Turn>) -> (Self, FetchLog) {
        let log = FetchLog::default();
        let source = ScriptedSource {
            queue: queue.clone(),
            script: Arc::new(Mutex::new(script.into())),
            log: log.clone(),
        };
        (source, log)
    }

    fn next_turn(&self) -> Turn {
        let mut script = self.script.lock().unwrap_or_else(|p| p.into_inner());
        script.pop_front().unwrap_or(Turn::Queue)
    }

    /// Moves up to `count` items from the queue to `into`.
    async fn take(&mut self, count: usize, into: &mut Vec<u64>) -> Fetched {
        let before = into.len();
        let fetched = self.queue.fetch(count, into).await;
        let fetched = fetched.unwrap_or_else(|never| match never {});
        let handed = into.len() - before;
        self.log.handed_out.fetch_add(handed, Ordering::SeqCst);
        fetched
    }
}

impl Fetch for ScriptedSource {
    type Item = u64;
    type Error = Failure;

    async fn fetch(&mut self, max: usize, into: &mut Vec<u64>) -> Result<Fetched, Failure> {
        if self.log.calls.len() >= BUSY {
            // A busy loop: stop answering, so that the test fails on what it checks
            // instead of spinning forever.
            std::future::pending::<()>().await;
        }
        let handed_out = self.log.handed_out.load(Ordering::SeqCst);
        let given_back = self.log.given_back.read(|backs| backs.concat().len());
        self.log.calls.push(Call {
            max,
            outstanding: handed_out - given_back,
            asked: self.log.asked.load(Ordering::SeqCst),
            at: Instant::now(),
        });
        match self.next_turn() {
            Turn::Queue => Ok(self.take(max, into).await),
            Turn::PushThenHang(count) => {
                self.take(count.min(max), into).await;
                std::future::pending().await
            }
            Turn::PushThenFail(count, failure) => {
                self.take(count.min(max), into).await;
                Err(failure)
            }
            Turn::WaitFor(gate) => {
                gate.pass().await;
                Ok(self.take(max, into).await)
            }
            Turn::Greedy(count) => Ok(self.take(count, into).await),
            Turn::Panic => panic!("the source exploded"),
        }
    }

    async fn give_back(&mut self, items: Vec<u64>) {
        self.log.given_back.push(items.clone());
        self.queue.give_back(items).await;
    }

    fn on_error(&mut self, error: &Failure, attempt: u32) -> OnFetchError {
        self.log.attempts.push(attempt);
        match error {
            Failure::Passing => OnFetchError::backoff(attempt),
            Failure::Fatal => OnFetchError::Stop,
        }
    }

    async fn idle(&mut self, empty: u32) {
        self.log.idles.push(empty);
        self.queue.idle(empty).await;
    }
}
