//! Outcomes sent to the server: acks as one `XACK` while an entry is surely this
//! consumer's; everything else through a script that checks it still is.

use std::sync::Arc;
use std::time::Instant;

use gen_stage_pipeline::{AckError, Acknowledger, Failure, Outcome, Settled};
use redis::RedisError;
use redis::aio::MultiplexedConnection;
use tracing::Instrument;

use crate::delivery::Delivery;
use crate::entry::EntryId;
use crate::scripts::{ACK_AND_DELETE_SCRIPT, RELEASED_CONSUMER, SETTLE_SCRIPT};
use crate::source::{Settlement, Shared, millis};

/// The most bytes of a failure kept in a dead letter's error field.
const ERROR_FIELD_MAX: usize = 4096;

/// The source's [`Acknowledger`].
pub(crate) struct RedisAcker(pub(crate) Arc<Shared>);

/// An outcome the settle script checks and carries out.
#[derive(Debug)]
struct Checked {
    operation: Operation,
    delivery: Delivery,
    /// The retry's delay in ms, or the reject's error.
    detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operation {
    Ack,
    Retry,
    Reject,
    Release,
}

impl Operation {
    fn code(self) -> &'static str {
        match self {
            Operation::Ack => "a",
            Operation::Retry => "r",
            Operation::Reject => "d",
            Operation::Release => "l",
        }
    }
}

impl Checked {
    fn new(outcome: Outcome, delivery: Delivery, failure: Option<&Failure>) -> Self {
        let (operation, detail) = match outcome {
            Outcome::Ack | Outcome::Terminate => (Operation::Ack, String::new()),
            Outcome::Retry { after } => (Operation::Retry, millis(after).to_string()),
            Outcome::Reject => (Operation::Reject, error_field(failure)),
            // A release, and any outcome added later: claimable again at once.
            _ => (Operation::Release, String::new()),
        };
        Checked {
            operation,
            delivery,
            detail,
        }
    }
}

/// A failure as a dead letter's error field: one line, at most 4 KiB.
fn error_field(failure: Option<&Failure>) -> String {
    let mut error = failure.map_or_else(|| "rejected".to_owned(), ToString::to_string);
    if error.len() > ERROR_FIELD_MAX {
        let mut end = ERROR_FIELD_MAX;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    error
}

impl Acknowledger for RedisAcker {
    async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
        let shared = &self.0;
        let deliveries = shared
            .in_flight
            .settle_all(settled.iter().map(|settled| settled.tag));
        let mut settlement = Settlement::default();
        let mut outcomes = Vec::with_capacity(settled.len());
        let mut leaving = 0;
        for (settled, delivery) in settled.iter().zip(deliveries) {
            leaving += usize::from(delivery.is_some());
            match delivery {
                // Settled before, or given back.
                None => settlement.voided += 1,
                // A renewal found it trimmed from the stream, and acked it.
                Some(delivery) if delivery.was_trimmed() => settlement.vanished += 1,
                Some(delivery) => {
                    outcomes.push((settled.outcome, delivery, settled.failure.as_ref()))
                }
            }
        }
        let span = tracing::debug_span!("redis settle", entries = outcomes.len());
        let sent = send(shared, outcomes, &mut settlement)
            .instrument(span)
            .await;
        // The server has answered (or the connection failed: the entries wait for
        // their lease, outside the count).
        shared.server_budget.give(leaving);
        if settlement.retried > 0 {
            shared.wake.notify_one();
        }
        if settlement.released > 0 {
            shared.sweep_soon();
        }
        let result = match sent {
            Ok(()) => Ok(()),
            Err((error, unsent)) => {
                // What was not sent stays pending: claimed again after its lease.
                settlement.failed += unsent;
                tracing::warn!(%error, unsent, "Redis: settling entries failed; they are claimed again after their lease");
                shared.failed(&error).await;
                Err(AckError::new(error))
            }
        };
        shared.count(&settlement);
        result
    }
}

/// Sends `outcomes`: acks of entries surely held as one `XACK`, the rest through the
/// settle script. On failure, answers how many were not sent.
async fn send(
    shared: &Shared,
    outcomes: Vec<(Outcome, Delivery, Option<&Failure>)>,
    settlement: &mut Settlement,
) -> Result<(), (RedisError, u64)> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let mut unsent = outcomes.len() as u64;
    let mut connection = shared
        .commands
        .get()
        .await
        .map_err(|error| (error, unsent))?;
    shared.reached();
    // Judged with the connection in hand: what is left is the command's own trip.
    let (lease, now) = (shared.options.lease, Instant::now());
    let mut plain = Vec::new();
    let mut checked = Vec::new();
    for (outcome, delivery, failure) in outcomes {
        match outcome {
            Outcome::Ack | Outcome::Terminate if delivery.surely_held(lease, now) => {
                plain.push(delivery.id);
            }
            outcome => checked.push(Checked::new(outcome, delivery, failure)),
        }
    }
    if !plain.is_empty() {
        let acked = ack_plain(shared, &mut connection, &plain)
            .await
            .map_err(|error| (error, unsent))?;
        let sent = plain.len() as u64;
        settlement.acked += acked.min(sent);
        // Acked by someone else meanwhile (an instance with a shorter lease).
        settlement.voided += sent - acked.min(sent);
        unsent -= sent;
    }
    if !checked.is_empty() {
        settle_checked(shared, &mut connection, &checked, settlement)
            .await
            .map_err(|error| (error, unsent))?;
    }
    Ok(())
}

/// Acks entries surely this consumer's: `XACK` (with `XDEL`, in one script, if the
/// options delete acked entries). Answers how many the server acked.
async fn ack_plain(
    shared: &Shared,
    connection: &mut MultiplexedConnection,
    ids: &[EntryId],
) -> Result<u64, RedisError> {
    let options = &shared.options;
    if options.delete_on_ack {
        ACK_AND_DELETE_SCRIPT
            .key(&options.stream)
            .arg(&options.group)
            .arg(ids)
            .invoke_async(connection)
            .await
    } else {
        redis::cmd("XACK")
            .arg(&options.stream)
            .arg(&options.group)
            .arg(ids)
            .query_async(connection)
            .await
    }
}

/// Runs the settle script for `checked`, counting what it did.
async fn settle_checked(
    shared: &Shared,
    connection: &mut MultiplexedConnection,
    checked: &[Checked],
    settlement: &mut Settlement,
) -> Result<(), RedisError> {
    let options = &shared.options;
    let mut script = SETTLE_SCRIPT.key(&options.stream);
    script
        .key(&options.delayed_key)
        .key(
            options
                .dead_letter_stream
                .as_deref()
                .unwrap_or(&options.stream),
        )
        .arg(&options.group)
        .arg(&options.consumer)
        .arg(u8::from(options.delete_on_ack))
        .arg(u8::from(options.dead_letter_stream.is_some()))
        .arg(millis(options.lease))
        .arg(RELEASED_CONSUMER);
    for checked in checked {
        let delivery = &checked.delivery;
        script
            .arg(checked.operation.code())
            .arg(delivery.id)
            .arg(delivery.count)
            .arg(delivery.attempt)
            .arg(delivery.origin)
            .arg(&checked.detail);
    }
    let codes: Vec<u8> = script.invoke_async(connection).await?;
    for (checked, code) in checked.iter().zip(codes) {
        if code == 0 {
            settlement.voided += 1;
            continue;
        }
        if code == 2 {
            // Trimmed from the stream: acked, with nothing to copy.
            settlement.vanished += 1;
            continue;
        }
        match checked.operation {
            Operation::Retry => settlement.retried += 1,
            Operation::Reject if options.dead_letter_stream.is_some() => {
                settlement.dead_lettered += 1;
            }
            // Acked, terminated, or rejected with no dead-letter stream.
            Operation::Ack | Operation::Reject => settlement.acked += 1,
            Operation::Release => settlement.released += 1,
        }
    }
    Ok(())
}

/// Makes `deliveries` claimable again at once (given back unhandled), keeping their
/// delivery counts; those no longer this consumer's are left alone. This instance's
/// next read sweeps for them.
pub(crate) async fn release(shared: &Shared, deliveries: Vec<Delivery>) {
    if deliveries.is_empty() {
        return;
    }
    let checked: Vec<Checked> = deliveries
        .into_iter()
        .map(|delivery| Checked::new(Outcome::Release, delivery, None))
        .collect();
    settle_now(shared, &checked).await;
    shared.sweep_soon();
}

/// Rejects entries the pipeline cannot be handed (field names that are not UTF-8):
/// copied to the dead-letter stream, or acked without one; counted as malformed.
pub(crate) async fn reject_malformed(shared: &Shared, deliveries: Vec<Delivery>) {
    if deliveries.is_empty() {
        return;
    }
    tracing::warn!(
        entries = deliveries.len(),
        "Redis: entries with field names that are not UTF-8 cannot be handed to the pipeline; rejected"
    );
    let failure = Failure::error(
        "field names that are not UTF-8: the entry cannot be handed to the pipeline",
    );
    let checked: Vec<Checked> = deliveries
        .into_iter()
        .map(|delivery| Checked::new(Outcome::Reject, delivery, Some(&failure)))
        .collect();
    shared.malformed(checked.len() as u64);
    settle_now(shared, &checked).await;
}

/// Runs the settle script for `checked` outside the pipeline's acknowledgements.
async fn settle_now(shared: &Shared, checked: &[Checked]) {
    let mut settlement = Settlement::default();
    let settled = async {
        let mut connection = shared.commands.get().await?;
        settle_checked(shared, &mut connection, checked, &mut settlement).await
    }
    .instrument(tracing::debug_span!(
        "redis settle now",
        entries = checked.len()
    ))
    .await;
    shared.server_budget.give(checked.len());
    if let Err(error) = settled {
        tracing::warn!(%error, "Redis: settling entries failed; they are claimed again after their lease");
        settlement.failed += checked.len() as u64;
        shared.failed(&error).await;
    }
    shared.count(&settlement);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn delivery() -> Delivery {
        let id = EntryId::parse("1-0").expect("an entry id");
        Delivery::new(id, 1, 1, id, Instant::now())
    }

    #[test]
    fn each_outcome_has_its_operation() {
        let operation = |outcome| Checked::new(outcome, delivery(), None).operation;
        assert_eq!(operation(Outcome::Ack), Operation::Ack);
        assert_eq!(operation(Outcome::Terminate), Operation::Ack);
        assert_eq!(operation(Outcome::Reject), Operation::Reject);
        assert_eq!(operation(Outcome::Release), Operation::Release);
        let retry = Checked::new(
            Outcome::Retry {
                after: Duration::from_millis(1500),
            },
            delivery(),
            None,
        );
        assert_eq!(
            (retry.operation, retry.detail.as_str()),
            (Operation::Retry, "1500")
        );
    }

    #[test]
    fn a_long_error_is_cut_at_a_character_boundary() {
        let failure = Failure::error("é".repeat(3000));
        let field = error_field(Some(&failure));
        assert!(field.len() <= ERROR_FIELD_MAX);
        assert!(field.ends_with('é'));
        assert_eq!(error_field(None), "rejected");
    }
}
