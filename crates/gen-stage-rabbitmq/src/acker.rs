//! Outcomes sent to the broker: ack, requeue, reject, and the copies a retry with a
//! delay or a dead letter publishes before its original is acked.

use std::sync::Arc;

use futures::future::Either;
use gen_stage::BoxError;
use gen_stage_pipeline::{AckError, Acknowledger, Outcome, Settled};
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use tracing::Instrument;

use crate::copy::{dead_letter_properties, retry_properties};
use crate::delay;
use crate::session::Session;
use crate::source::{Delivery, OutcomeCounts, Shared};

/// The source's [`Acknowledger`]: each outcome on the channel that delivered its
/// message.
pub(crate) struct RabbitAcker(pub(crate) Arc<Shared>);

/// An outcome the delivery's channel says alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Ack,
    /// `basic.ack` with `multiple`: this delivery and every one below it.
    AckAllUpTo,
    Requeue,
    Drop,
}

/// What the broker is told for `outcome`, or `None` where a copy is published first.
fn answer(outcome: Outcome, dead_letter_queue: bool) -> Option<Answer> {
    match outcome {
        // Terminate: the message goes nowhere, not even to the queue's own
        // dead-letter exchange.
        Outcome::Ack | Outcome::Terminate => Some(Answer::Ack),
        Outcome::Retry { .. } => None,
        Outcome::Reject if dead_letter_queue => None,
        Outcome::Reject => Some(Answer::Drop),
        // A release, and any outcome added later: delivered again now.
        _ => Some(Answer::Requeue),
    }
}

impl Acknowledger for RabbitAcker {
    async fn ack(&self, settled: Vec<Settled>) -> Result<(), AckError> {
        let shared = &self.0;
        let session = shared.current().filter(|session| session.is_alive());
        let mut counts = OutcomeCounts::default();
        let Some(session) = session else {
            // Every delivery is of a connection that is gone (or settled already):
            // the broker delivers them again.
            shared
                .in_flight
                .settle_all(settled.iter().map(|settled| settled.tag));
            counts.voided = settled.len() as u64;
            shared.count_outcomes(counts);
            return Ok(());
        };
        let plan = Plan::make(shared, &session, settled, &mut counts);
        let span = tracing::debug_span!(
            "rabbitmq ack",
            covered = plan.covered,
            messages = plan.answers.len(),
            copies = plan.copies.len()
        );
        let mut failure = None;
        async {
            let covering = plan
                .covering
                .as_ref()
                .map(|delivery| Either::Left(send(delivery, Answer::AckAllUpTo)));
            let calls = covering
                .into_iter()
                .chain(
                    plan.answers
                        .iter()
                        .map(|(delivery, answer)| Either::Left(send(delivery, *answer))),
                )
                .chain(plan.copies.iter().map(|(delivery, settled)| {
                    Either::Right(copy_then_ack(shared, &session, delivery, settled))
                }))
                .collect();
            let mut results = session.while_alive(calls).await.into_iter();
            if let Some(delivery) = &plan.covering {
                let result = voided_if_poisoned(delivery, results.next());
                let covered = plan.covered as u64;
                match result {
                    Ok(true) => counts.acked += covered,
                    Ok(false) => counts.voided += covered,
                    Err(error) => {
                        counts.failed += covered;
                        failure.get_or_insert(error);
                    }
                }
            }
            let deliveries = plan
                .answers
                .iter()
                .map(|(delivery, answer)| {
                    (delivery, (*answer == Answer::Ack).then_some(Outcome::Ack))
                })
                .chain(
                    plan.copies
                        .iter()
                        .map(|(delivery, settled)| (delivery, Some(settled.outcome))),
                );
            // What each one-by-one outcome stands for: an ack, a copy's outcome.
            for (delivery, stands_for) in deliveries {
                let result = voided_if_poisoned(delivery, results.next());
                let sent = result.as_ref().is_ok_and(|sent| *sent);
                tally(&mut counts, &mut failure, result);
                match stands_for {
                    _ if !sent => {}
                    Some(Outcome::Ack) => counts.acked += 1,
                    Some(Outcome::Reject) => counts.dead_lettered += 1,
                    Some(_) => counts.retried += 1,
                    None => {}
                }
            }
        }
        .instrument(span)
        .await;
        session.sent_individually(plan.individual_tags());
        shared.count_outcomes(counts);
        match failure {
            Some(error) => {
                shared.error(&error);
                Err(AckError::new(error))
            }
            None => Ok(()),
        }
    }
}

/// What one acknowledger call sends on the live connection.
struct Plan {
    /// The delivery whose `basic.ack` with `multiple` acks every ack of the call
    /// below the lowest tag still unsettled: one frame for most of a batch.
    covering: Option<Delivery>,
    /// How many acks `covering` stands for.
    covered: usize,
    /// Outcomes sent one by one: acks above an unsettled tag, requeues, drops.
    answers: Vec<(Delivery, Answer)>,
    /// Retries and dead letters: a copy published, then the original acked.
    copies: Vec<(Delivery, Settled)>,
}

impl Plan {
    /// Takes the call's deliveries out of flight and sorts their outcomes, under the
    /// session's lock on tags: a `multiple` ack must never reach a tag whose own
    /// outcome is still to be sent, by this call or another.
    fn make(
        shared: &Shared,
        session: &Session,
        settled: Vec<Settled>,
        counts: &mut OutcomeCounts,
    ) -> Plan {
        let dead_letters = shared.options.dead_letter_queue.is_some();
        let mut sending = session.lock_sending();
        let deliveries = shared
            .in_flight
            .settle_all(settled.iter().map(|settled| settled.tag));
        let mut acks = Vec::with_capacity(settled.len());
        let mut answers = Vec::new();
        let mut copies = Vec::new();
        for (settled, delivery) in settled.into_iter().zip(deliveries) {
            // Settled before, given back, or delivered on a connection that is gone:
            // the broker delivers it again, and its tag means nothing elsewhere.
            let Some(delivery) = delivery.filter(|delivery| {
                delivery.acker.usable() && delivery.connection == session.number
            }) else {
                counts.voided += 1;
                continue;
            };
            match answer(settled.outcome, dead_letters) {
                Some(Answer::Ack) => acks.push(delivery),
                Some(answer) => answers.push((delivery, answer)),
                None => copies.push((delivery, settled)),
            }
        }
        // The lowest tag of this connection whose outcome is not among the acks:
        // unsettled, or on its way alone.
        let mut lowest = sending.first().copied().unwrap_or(u64::MAX);
        shared.in_flight.for_each(|_, delivery| {
            if delivery.connection == session.number {
                lowest = lowest.min(delivery.tag);
            }
        });
        for delivery in answers
            .iter()
            .map(|(delivery, _)| delivery)
            .chain(copies.iter().map(|(delivery, _)| delivery))
        {
            lowest = lowest.min(delivery.tag);
        }
        let (below, above): (Vec<Delivery>, Vec<Delivery>) =
            acks.into_iter().partition(|delivery| delivery.tag < lowest);
        let covered = below.len();
        let covering = below.into_iter().max_by_key(|delivery| delivery.tag);
        answers.extend(above.into_iter().map(|delivery| (delivery, Answer::Ack)));
        let plan = Plan {
            covering,
            covered,
            answers,
            copies,
        };
        sending.extend(plan.individual_tags());
        plan
    }

    /// The tags whose outcomes are sent one by one.
    fn individual_tags(&self) -> impl Iterator<Item = u64> + '_ {
        self.answers
            .iter()
            .map(|(delivery, _)| delivery.tag)
            .chain(self.copies.iter().map(|(delivery, _)| delivery.tag))
    }
}

/// A call's result, a failure counted as voided when the delivery's channel went
/// meanwhile (its message goes back to the queue with it).
fn voided_if_poisoned(
    delivery: &Delivery,
    result: Option<Result<bool, BoxError>>,
) -> Result<bool, BoxError> {
    match result.unwrap_or(Ok(false)) {
        Err(_) if delivery.acker.poisoned() => Ok(false),
        other => other,
    }
}

/// Counts what one outcome came to: sent, voided (its channel went first), failed.
fn tally(
    counts: &mut OutcomeCounts,
    failure: &mut Option<BoxError>,
    result: Result<bool, BoxError>,
) {
    match result {
        Ok(true) => {}
        Ok(false) => counts.voided += 1,
        Err(error) => {
            counts.failed += 1;
            failure.get_or_insert(error);
        }
    }
}

/// Sends `answer` on the delivery's channel: `Ok(false)` if the channel is gone.
async fn send(delivery: &Delivery, answer: Answer) -> Result<bool, BoxError> {
    let acker = &delivery.acker;
    let sent = match answer {
        Answer::Ack => acker.ack(BasicAckOptions::default()).await,
        Answer::AckAllUpTo => acker.ack(BasicAckOptions { multiple: true }).await,
        Answer::Requeue => {
            acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await
        }
        Answer::Drop => acker.reject(BasicRejectOptions { requeue: false }).await,
    };
    Ok(sent?)
}

/// Publishes the copy a retry or a dead letter needs, then acks the original; if the
/// copy could not be published, requeues the original (delivered again, its attempt
/// counted by the broker's redelivered flag).
async fn copy_then_ack(
    shared: &Shared,
    session: &Session,
    delivery: &Delivery,
    settled: &Settled,
) -> Result<bool, BoxError> {
    let queue = &shared.options.queue;
    let published = async {
        match (settled.outcome, &shared.options.dead_letter_queue) {
            (Outcome::Reject, Some(dead)) => {
                let properties = dead_letter_properties(delivery, queue, settled.failure.as_ref());
                session
                    .publish(dead, delivery.message.data(), properties)
                    .await
            }
            (outcome, _) => {
                let after = match outcome {
                    Outcome::Retry { after } => after,
                    _ => std::time::Duration::ZERO,
                };
                if after.is_zero() {
                    let properties = retry_properties(delivery);
                    return session
                        .publish(queue, delivery.message.data(), properties)
                        .await;
                }
                let ms = delay::rounded_ms(after);
                session.declare_delay(queue, ms).await?;
                // Its own expiration no later than the delay queue's (the broker
                // removes it when the copy expires into the queue).
                let properties = retry_properties(delivery).with_expiration(ms.to_string().into());
                let target = delay::queue_name(queue, ms);
                session
                    .publish(&target, delivery.message.data(), properties)
                    .await
            }
        }
    };
    match published.await {
        Ok(()) => send(delivery, Answer::Ack).await,
        Err(error) => {
            tracing::warn!(%error, "RabbitMQ: publishing a copy failed; the message is requeued");
            send(delivery, Answer::Requeue).await?;
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_outcome_has_the_brokers_own_answer() {
        assert_eq!(answer(Outcome::Ack, true), Some(Answer::Ack));
        assert_eq!(answer(Outcome::Terminate, true), Some(Answer::Ack));
        assert_eq!(answer(Outcome::Release, true), Some(Answer::Requeue));
        assert_eq!(answer(Outcome::Reject, false), Some(Answer::Drop));
        // Copies first: a retry (with or without delay), a dead letter.
        assert_eq!(answer(Outcome::Reject, true), None);
        let retry = |after| answer(Outcome::Retry { after }, true);
        assert_eq!(retry(Duration::ZERO), None);
        assert_eq!(retry(Duration::from_secs(1)), None);
    }
}
