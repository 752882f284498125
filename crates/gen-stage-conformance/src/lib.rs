//! The conformance kit of gen-stage's connectors: scenarios every connector passes
//! against its real server, with the broker's own view as the witness.
//!
//! A scenario that crashes a pipeline runs it in a separate OS process, the
//! `conformance-worker` binary of this crate, and kills it with SIGKILL. The worker
//! writes one line per message it processed to a record file, `id attempt`, before
//! the message is acked: what the test reads afterwards to check that every message
//! was processed at least once, and that a message processed twice was delivered
//! twice by the broker (its attempt says so).

pub mod brokers;
mod crash;
mod proxy;
mod scale_out;

pub use crash::{Crash, CrashSummary};
pub use proxy::Proxy;
pub use scale_out::{ScaleOut, ScaleOutSummary};

use std::collections::HashMap;
use std::path::Path;

/// What a worker recorded: for each message id, the attempts it processed, in the
/// order it did.
pub type Records = HashMap<i64, Vec<u32>>;

/// The line a worker appends for a message it processed.
pub fn record_line(id: i64, attempt: u32) -> String {
    format!("{id} {attempt}\n")
}

/// Reads a record file; a last line cut short by a kill is ignored.
///
/// # Errors
///
/// The file cannot be read.
pub fn read_records(path: &Path) -> std::io::Result<Records> {
    let text = std::fs::read_to_string(path)?;
    let mut records = Records::new();
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(id), Some(attempt), None) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if let (Ok(id), Ok(attempt)) = (id.parse(), attempt.parse()) {
            records.entry(id).or_default().push(attempt);
        }
    }
    Ok(records)
}

/// Checks what workers recorded against the messages `ids`: every one processed,
/// and none processed twice within one delivery (the same attempt recorded twice:
/// a message processed twice must have been delivered twice). Returns how many were
/// processed more than once.
///
/// # Errors
///
/// What is wrong: the ids never processed, or a message and its attempts.
pub fn check_processed(ids: &[i64], processed: &Records) -> Result<usize, String> {
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !processed.contains_key(id))
        .collect();
    if !missing.is_empty() {
        return Err(format!("never processed: {missing:?}"));
    }
    let mut processed_twice = 0;
    for (id, attempts) in processed {
        let mut seen = attempts.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != attempts.len() {
            return Err(format!(
                "message {id} processed twice in one delivery: attempts {attempts:?}"
            ));
        }
        processed_twice += usize::from(attempts.len() > 1);
    }
    Ok(processed_twice)
}

/// How many lines a record file holds now (0 if it does not exist yet).
pub fn recorded(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// Waits until `done` says so, looking every 20 ms; panics, naming `what`, if it
/// does not within `within` (a guard against a hang: the conditions read a broker's
/// view, which changes on the broker's own time).
///
/// # Panics
///
/// When `within` passes first.
pub async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    within: std::time::Duration,
    mut done: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached in {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_back_and_a_line_cut_short_is_ignored() {
        let path = std::env::temp_dir().join(format!("records-{}", std::process::id()));
        let text = format!(
            "{}{}{}7 ",
            record_line(7, 1),
            record_line(9, 1),
            record_line(7, 2)
        );
        std::fs::write(&path, text).expect("written");
        let records = read_records(&path).expect("read");
        assert_eq!(records[&7], [1, 2]);
        assert_eq!(records[&9], [1]);
        assert_eq!(records.len(), 2);
        assert_eq!(recorded(&path), 4);
        assert_eq!(check_processed(&[7, 9], &records), Ok(1));
        assert!(check_processed(&[7, 9, 11], &records).is_err_and(|e| e.contains("[11]")));
        std::fs::remove_file(&path).expect("removed");
    }
}
