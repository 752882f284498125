//! A producer's fetches: the messages the broker pushed, taken as the pipeline's
//! demand asks and the budget allows.

use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, StreamExt};
use gen_stage::source::{Fetch, Fetched, OnFetchError};
use gen_stage_pipeline::{AckGroup, Message, MessageId, Reservation};
use lapin::Consumer;
use lapin::options::BasicNackOptions;

use crate::acker::RabbitAcker;
use crate::error::FetchError;
use crate::message::{RabbitMessage, attempt_of};
use crate::session::{LIVENESS_CHECK, Session};
use crate::source::{Delivery, RabbitSource, Shared};

/// One producer's fetches from the source's consumer (made by
/// [`RabbitSource::producer`]). The broker pushes up to the budget (the channel's
/// prefetch) ahead; each fetch takes what the pipeline's demand asks for and the
/// budget allows, waiting for the first message only.
///
/// Each message's [`Metadata`](gen_stage_pipeline::Metadata) carries its
/// `message_id` property as its id (set it when publishing: the broker has no id of
/// its own) and its attempt: the attempt a retried copy was published for, plus one
/// if the broker delivered it before (a quorum queue's `x-delivery-count` counts
/// each return).
pub struct RabbitFetch {
    source: RabbitSource,
    group: Arc<AckGroup>,
}

impl std::fmt::Debug for RabbitFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitFetch")
            .field("source", &self.source)
            .finish()
    }
}

impl RabbitFetch {
    pub(crate) fn new(source: RabbitSource) -> Self {
        let group = AckGroup::new(RabbitAcker(source.shared.clone()));
        RabbitFetch { source, group }
    }

    /// Takes one delivery into flight, and into `into`.
    fn take(
        &self,
        session: &Session,
        delivery: lapin::message::Delivery,
        reservation: &mut Reservation<Delivery>,
        into: &mut Vec<Message<RabbitMessage>>,
    ) {
        let lapin::message::Delivery {
            delivery_tag,
            exchange,
            routing_key,
            redelivered,
            properties,
            data,
            acker,
            ..
        } = delivery;
        let attempt = attempt_of(&properties, redelivered);
        let id = properties
            .message_id()
            .as_ref()
            .map(|id| MessageId::Text(id.as_str().to_owned()));
        let message = RabbitMessage::new(data, exchange, routing_key, redelivered, properties);
        let entry = Delivery {
            acker,
            tag: delivery_tag,
            connection: session.number,
            attempt,
            message: message.clone(),
        };
        match reservation.admit(entry) {
            Ok(tag) => {
                let mut message =
                    Message::new(message, self.group.handle(tag)).with_attempt(attempt);
                if let Some(id) = id {
                    message = message.with_id(id);
                }
                into.push(message);
            }
            // Never more than the reservation: each fetch reads at most what it
            // reserved. Should it happen, the broker delivers the message again.
            Err(entry) => {
                tokio::spawn(async move {
                    let _ = entry.acker.nack(requeue()).await;
                });
            }
        }
    }
}

/// The consumer's next delivery: at once if the broker pushed one, otherwise
/// waiting for it while the connection lives (`None` once it is found gone).
async fn first(
    consumer: &mut Consumer,
    session: &Session,
) -> Option<lapin::Result<lapin::message::Delivery>> {
    if let Some(next) = consumer.next().now_or_never() {
        return next;
    }
    let mut check = tokio::time::interval(LIVENESS_CHECK);
    check.reset();
    loop {
        tokio::select! {
            next = consumer.next() => return next,
            _ = check.tick() => {
                if !session.is_alive() {
                    return None;
                }
            }
        }
    }
}

/// Why the consumer of `session` ended, once it did; the session is discarded: the
/// next fetch connects again.
fn ended(shared: &Shared, session: &Arc<Session>) -> FetchError {
    shared.discard(session);
    if session.is_alive() {
        shared.error("the broker cancelled the consumer");
        FetchError::Cancelled
    } else {
        shared.error("the connection closed");
        FetchError::Disconnected
    }
}

/// Ends a fetch whose consumer ended: those taken before are emitted (the next
/// fetch reports the failure), or the failure is reported now.
fn emitted_or(into: &[Message<RabbitMessage>], error: FetchError) -> Result<Fetched, FetchError> {
    if into.is_empty() {
        Err(error)
    } else {
        Ok(Fetched::More)
    }
}

fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        multiple: false,
        requeue: true,
    }
}

impl Fetch for RabbitFetch {
    type Item = Message<RabbitMessage>;
    type Error = FetchError;

    async fn fetch(
        &mut self,
        max: usize,
        into: &mut Vec<Message<RabbitMessage>>,
    ) -> Result<Fetched, FetchError> {
        let shared = self.source.shared.clone();
        let session = shared.session().await?;
        // One producer at a time reads the consumer; budget is reserved only by the
        // one reading, so waiting producers hold none.
        let mut guard = session.consumer.lock().await;
        // Another producer may have seen it end while this one waited for it.
        let Some(consumer) = guard.as_mut() else {
            return Err(ended(&shared, &session));
        };
        let mut reservation = loop {
            if let Some(reservation) = shared.in_flight.try_reserve(max) {
                break reservation;
            }
            shared.in_flight.budget_freed().await;
        };
        let granted = reservation.granted();
        let started = Instant::now();
        // Dropping this future while it waits loses nothing: a delivery is handed
        // over only by a poll that returns it.
        let mut next = first(consumer, &session).await;
        shared.fetched_in(started.elapsed());
        loop {
            match next {
                Some(Ok(delivery)) => self.take(&session, delivery, &mut reservation, into),
                Some(Err(error)) => {
                    *guard = None;
                    let _ = ended(&shared, &session);
                    // The client's own word for it, over `ended`'s.
                    shared.error(&error);
                    return emitted_or(into, FetchError::Consume(error));
                }
                None => {
                    *guard = None;
                    return emitted_or(into, ended(&shared, &session));
                }
            }
            if into.len() >= granted {
                return Ok(Fetched::More);
            }
            // What else the broker pushed already, without waiting.
            match consumer.next().now_or_never() {
                Some(more) => next = more,
                None => return Ok(Fetched::More),
            }
        }
    }

    async fn give_back(&mut self, messages: Vec<Message<RabbitMessage>>) {
        let tags = messages
            .into_iter()
            .map(|message| message.into_parts().2.into_tag());
        let shared = &self.source.shared;
        // Those of a connection that is gone went back to the queue with it.
        let Some(session) = shared.current() else {
            shared.in_flight.settle_all(tags);
            return;
        };
        // Taken out of flight under the session's lock on tags, so that no
        // `multiple` ack covers them before they are requeued.
        let deliveries: Vec<Delivery> = {
            let mut sending = session.lock_sending();
            let deliveries: Vec<Delivery> = shared
                .in_flight
                .settle_all(tags)
                .into_iter()
                .flatten()
                .filter(|delivery| delivery.connection == session.number)
                .collect();
            sending.extend(deliveries.iter().map(|delivery| delivery.tag));
            deliveries
        };
        let released = deliveries
            .iter()
            .map(|delivery| async move {
                Ok::<_, gen_stage::BoxError>(delivery.acker.nack(requeue()).await?)
            })
            .collect();
        for result in session.while_alive(released).await {
            if let Err(error) = result {
                tracing::debug!(%error, "RabbitMQ: releasing a message given back failed; it goes back to the queue with its channel");
            }
        }
        session.sent_individually(deliveries.iter().map(|delivery| delivery.tag));
    }

    fn on_error(&mut self, error: &FetchError, attempt: u32) -> OnFetchError {
        let shared = &self.source.shared;
        if matches!(error, FetchError::Closed) {
            return OnFetchError::Stop;
        }
        shared.reconnecting(attempt);
        if shared
            .options
            .max_reconnect_attempts
            .is_some_and(|limit| attempt > limit)
        {
            tracing::error!(%error, attempt, "RabbitMQ: giving up reconnecting");
            return OnFetchError::Stop;
        }
        let after = shared.options.backoff.delay(attempt);
        tracing::warn!(%error, attempt, ?after, "RabbitMQ: fetch failed, reconnecting");
        OnFetchError::Retry { after }
    }

    // A fetch waits for the broker's push and never comes back empty.
    async fn idle(&mut self, _empty: u32) {}
}
