//! A pipeline drains on SIGTERM. (Alone in its test binary: the signal is sent to the
//! whole test process.)

#![cfg(unix)]

mod support;

use gen_stage_pipeline::MemoryQueue;
use support::{Accept, SECOND, assert_adds_up, assert_settled_once, start};

#[tokio::test]
async fn sigterm_drains_the_pipeline() {
    let queue = MemoryQueue::new();
    queue.extend(0..100);
    let pipeline = start(Accept, &queue, |b| b).await;
    let drained = pipeline
        .drain_on_shutdown_signal(5 * SECOND)
        .expect("signals registered");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let report = drained.await;
    assert_adds_up(&report);
    assert!(!report.deadline_reached);
    assert_settled_once(&queue);
    assert_eq!(queue.acked() + queue.unsettled() as u64, 100);
}
