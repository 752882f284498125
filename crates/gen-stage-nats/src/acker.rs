//! Outcomes sent to the server: ack, nak with a delay, term, and dead letters.

use std::sync::Arc;
use std::time::Instant;

use async_nats::connection::State;
use async_nats::jetstream::AckKind;
use async_nats::{Client, HeaderMap, Subject};
use gen_stage::BoxError;
use gen_stage_pipeline::{AckError, Acknowledger, Failure, Outcome, Settled};
use tracing::Instrument;

use crate::source::{Delivery, Shared};

/// The source's [`Acknowledger`]: each outcome published to its message's ack
/// subject.
pub(crate) struct JetStreamAcker(pub(crate) Arc<Shared>);

/// What the server is told for `outcome`.
fn ack_kind(outcome: Outcome) -> AckKind {
    match outcome {
        Outcome::Ack => AckKind::Ack,
        Outcome::Retry { after } if !after.is_zero() => AckKind::Nak(Some(after)),
        Outcome::Reject | Outcome::Terminate => AckKind::Term,
        // A retry at once, a release, and any outcome added later: delivered again now.
        _ => AckKind::Nak(None),
    }
}

impl Acknowledger for JetStreamAcker {
    async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
        let shared = &self.0;
        let deliveries = shared
            .in_flight
            .settle_all(settled.iter().map(|settled| settled.tag));
        let ack_wait = shared.options.ack_wait;
        if shared.client.connection_state() != State::Connected {
            // Published now, the outcomes would wait in the client and go out after
            // the reconnection, perhaps after their ack waits ran out and the server
            // delivered the messages again: voided instead, and delivered again.
            let voided = shared
                .in_flight
                .settle_all(settled.iter().map(|settled| settled.tag))
                .len() as u64;
            shared.count_outcomes(voided, 0, 0);
            return Err(AckError::new("not connected to NATS: outcomes voided"));
        }
        let mut outcomes = Vec::with_capacity(settled.len());
        let (mut voided, mut failed, mut dead_lettered) = (0, 0, 0);
        for (settled, delivery) in settled.iter().zip(deliveries) {
            // Settled before, or given back; or its ack wait ran out, and the server
            // may have delivered it again: an outcome now could settle that delivery.
            // Checked now, each: a dead letter before it may have taken a while.
            let Some(delivery) =
                delivery.filter(|delivery| !delivery.lapsed(ack_wait, Instant::now()))
            else {
                voided += 1;
                continue;
            };
            if settled.outcome == Outcome::Reject && shared.options.dead_letter_subject.is_some() {
                if let Err(error) = dead_letter(shared, &delivery, settled.failure.as_ref()).await {
                    // Not terminated: delivered again after the ack wait, and rejected
                    // again.
                    tracing::warn!(%error, sequence = delivery.sequence, "JetStream: publishing a dead letter failed");
                    shared.connection.error(&error);
                    failed += 1;
                    continue;
                }
                dead_lettered += 1;
            }
            outcomes.push((delivery.reply, ack_kind(settled.outcome)));
        }
        let sent = outcomes.len() as u64;
        let span = tracing::debug_span!("jetstream ack", messages = sent);
        let result = send_outcomes(&shared.client, outcomes)
            .instrument(span)
            .await;
        if result.is_err() {
            failed += sent;
        }
        shared.count_outcomes(voided, failed, dead_lettered);
        result.map_err(|error| {
            shared.connection.error(&error);
            AckError::new(error)
        })
    }
}

/// Publishes each outcome to its ack subject. The client writes them to the server
/// at once; [`JetStreamSource::flush`](crate::JetStreamSource::flush) waits until
/// the server has them. (Waiting here, for each call, would hold every later outcome
/// for a round trip.)
pub(crate) async fn send_outcomes(
    client: &Client,
    outcomes: impl IntoIterator<Item = (Subject, AckKind)>,
) -> Result<(), BoxError> {
    for (reply, kind) in outcomes {
        client.publish(reply, kind.into()).await?;
    }
    Ok(())
}

/// Publishes `delivery`'s message to the dead-letter subject and waits for the
/// server to store it. Its `Nats-Msg-Id` makes a second publish of the same message
/// (after a crash between the two steps) a duplicate the server drops.
async fn dead_letter(
    shared: &Shared,
    delivery: &Delivery,
    failure: Option<&Failure>,
) -> Result<(), BoxError> {
    let Some(subject) = shared.options.dead_letter_subject.clone() else {
        return Ok(());
    };
    let span = tracing::debug_span!("jetstream dead letter", sequence = delivery.sequence);
    async {
        let original = shared.stream.get_raw_message(delivery.sequence).await?;
        let stream = &shared.options.stream;
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("{stream}-{}", delivery.sequence).as_str(),
        );
        headers.insert("Gen-Stage-Stream", stream.as_str());
        headers.insert("Gen-Stage-Sequence", delivery.sequence.to_string().as_str());
        headers.insert("Gen-Stage-Subject", delivery.subject.as_str());
        headers.insert("Gen-Stage-Attempt", delivery.attempt.to_string().as_str());
        if let Some(failure) = failure {
            // Header values are one line.
            let error = failure.to_string().replace(['\r', '\n'], " ");
            headers.insert("Gen-Stage-Error", error.as_str());
        }
        shared
            .jetstream
            .publish_with_headers(subject, headers, original.payload)
            .await?
            .await?;
        Ok(())
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_outcome_has_the_servers_own_answer() {
        // `AckKind` is not `PartialEq`: compared as the client prints it.
        let kind = |outcome| format!("{:?}", ack_kind(outcome));
        assert_eq!(kind(Outcome::Ack), "Ack");
        assert_eq!(kind(Outcome::Terminate), "Term");
        assert_eq!(kind(Outcome::Reject), "Term");
        assert_eq!(kind(Outcome::Release), "Nak(None)");
        let retry = |after| kind(Outcome::Retry { after });
        assert_eq!(retry(Duration::ZERO), "Nak(None)");
        assert_eq!(retry(Duration::from_millis(1500)), "Nak(Some(1.5s))");
    }
}
