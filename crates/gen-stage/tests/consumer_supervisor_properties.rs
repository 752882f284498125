//! Property tests of ConsumerSupervisor: with random demand windows and a random mix
//! of tasks (short, yielding, failing or panicking once, or whose template panics),
//! on one thread or two, every task runs to its end exactly as often as it should, no
//! more than `max_demand` run at once, and the counts add up. A lost wake or a lost
//! outcome in the worker pool shows as a stall.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use gen_stage::supervision::{ConsumerSupervisor, Restart};
use gen_stage::{BoxError, CancelMode, ExitReason};
use proptest::prelude::*;
use support::{opts, proptest_config, run_case, start_consumer};

/// Generous guard against a stall; a passing case never comes near it.
const STALL: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Ends in its first poll.
    Quick,
    /// Yields this many times first.
    Yields(u8),
    /// Its first run returns an error; the restart succeeds.
    FailsOnce,
    /// Its first run panics; the restart succeeds.
    PanicsOnce,
    /// The template panics for it: it never starts, and is not restarted.
    TemplatePanics,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Quick),
        2 => (1..4u8).prop_map(Kind::Yields),
        1 => Just(Kind::FailsOnce),
        1 => Just(Kind::PanicsOnce),
        1 => Just(Kind::TemplatePanics),
    ]
}

/// What the tasks record.
#[derive(Default)]
struct Record {
    /// Per event: runs started (each attempt) and runs that succeeded.
    attempts: Vec<AtomicU32>,
    succeeded: Vec<AtomicU32>,
    running: AtomicUsize,
    most_running: AtomicUsize,
    /// Successes in all.
    done: AtomicUsize,
    /// Rung at each success.
    progress: tokio::sync::Notify,
}

fn supervisor(kinds: Arc<Vec<Kind>>, record: Arc<Record>) -> ConsumerSupervisor<u64> {
    ConsumerSupervisor::new(move |event: u64| {
        let index = usize::try_from(event).expect("small events");
        let kind = kinds[index];
        assert_ne!(kind, Kind::TemplatePanics, "the template fails on {event}");
        let record = record.clone();
        async move {
            let attempt = record.attempts[index].fetch_add(1, Ordering::SeqCst);
            let now = record.running.fetch_add(1, Ordering::SeqCst) + 1;
            record.most_running.fetch_max(now, Ordering::SeqCst);
            if let Kind::Yields(times) = kind {
                for _ in 0..times {
                    tokio::task::yield_now().await;
                }
            }
            record.running.fetch_sub(1, Ordering::SeqCst);
            match (kind, attempt) {
                (Kind::FailsOnce, 0) => return Err::<(), BoxError>("first run fails".into()),
                (Kind::PanicsOnce, 0) => panic!("first run of {event} panics"),
                _ => {}
            }
            record.succeeded[index].fetch_add(1, Ordering::SeqCst);
            record.done.fetch_add(1, Ordering::SeqCst);
            record.progress.notify_one();
            Ok(())
        }
    })
    .restart(Restart::Transient)
    .intensity(10_000, Duration::from_secs(3600))
}

async fn run(kinds: Vec<Kind>, max: usize, min: usize) -> Result<(), TestCaseError> {
    let count = kinds.len();
    let record = Arc::new(Record {
        attempts: (0..count).map(|_| AtomicU32::new(0)).collect(),
        succeeded: (0..count).map(|_| AtomicU32::new(0)).collect(),
        ..Record::default()
    });
    let kinds = Arc::new(kinds);
    let producer = gen_stage::source::from_iter(0..count as u64)
        .start()
        .await
        .expect("starts");
    // Temporary: the supervisor stays up after the producer's end, so that restarts
    // late in the run still happen.
    let options = opts(max, min).cancel(CancelMode::Temporary);
    let sup = start_consumer(
        supervisor(kinds.clone(), record.clone()),
        &producer,
        options,
    )
    .await;
    let starting = |kind: &Kind| *kind != Kind::TemplatePanics;
    let expected_done = kinds.iter().filter(|kind| starting(kind)).count();
    let finished = tokio::time::timeout(STALL, async {
        loop {
            let progress = record.progress.notified();
            if record.done.load(Ordering::SeqCst) == expected_done {
                break;
            }
            progress.await;
        }
    })
    .await;
    prop_assert!(
        finished.is_ok(),
        "stalled at {} of {expected_done} tasks",
        record.done.load(Ordering::SeqCst)
    );
    // Every outcome reaches the supervisor: each call lets it handle what waits.
    let counts = tokio::time::timeout(STALL, async {
        loop {
            let counts = sup.count_children().await.expect("the supervisor answers");
            if counts.completed + counts.failed == count {
                break counts;
            }
        }
    })
    .await;
    prop_assert!(counts.is_ok(), "the counts never added up");
    let counts = counts.expect("checked");
    let count_of = |wanted: &[Kind]| kinds.iter().filter(|kind| wanted.contains(kind)).count();
    prop_assert_eq!(counts.failed, count_of(&[Kind::TemplatePanics]));
    prop_assert_eq!(
        counts.restarts,
        count_of(&[Kind::FailsOnce, Kind::PanicsOnce])
    );
    prop_assert_eq!(counts.running, 0);
    for (index, kind) in kinds.iter().enumerate() {
        let succeeded = record.succeeded[index].load(Ordering::SeqCst);
        prop_assert_eq!(succeeded, u32::from(starting(kind)), "event {}", index);
    }
    let most = record.most_running.load(Ordering::SeqCst);
    prop_assert!(most <= max, "{most} tasks ran at once, max_demand {max}");
    sup.stop(ExitReason::Shutdown).await.expect("stops");
    Ok(())
}

fn runtime(threaded: bool) -> tokio::runtime::Runtime {
    let mut builder = if threaded {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().expect("runtime")
}

proptest! {
    #![proptest_config(proptest_config(48))]

    #[test]
    fn every_task_runs_to_its_end_as_often_as_it_should_within_max_demand(
        kinds in prop::collection::vec(kind(), 1..200),
        max in 1..20usize,
        min_share in 0..100usize,
        threaded in any::<bool>(),
    ) {
        let min = max * min_share / 100;
        run_case(runtime(threaded), run(kinds, max, min))?;
    }
}
