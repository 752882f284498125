//! A producer's fetches: the messages the broker pushed, taken as the pipeline's
//! demand asks and the budget allows.

use std::sync::Arc;
use std::time::Instant;

use futures::{FutureExt, StreamExt};
use gen_stage::source::{Fetch, Fetched, OnFetchError};
use gen_stage_pipeline::{AckGroup, Message, MessageId, Reservation};
use lapin::options::BasicNackOptions;

use crate::acker::RabbitAcker;
use crate::error::FetchError;
use crate::message::{RabbitMessage, attempt_of};
use crate::session::Session;
use crate::source::{Delivery, RabbitSource};

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
        let mut consumer = session.consumer.lock().await;
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
        let mut next = consumer.next().await;
        shared.fetched_in(started.elapsed());
        loop {
            match next {
                Some(Ok(delivery)) => self.take(&session, delivery, &mut reservation, into),
                Some(Err(error)) => {
                    shared.error(&error);
                    shared.discard(&session);
                    if into.is_empty() {
                        return Err(FetchError::Consume(error));
                    }
                    // Those taken are emitted; the next fetch reports the failure.
                    return Ok(Fetched::More);
                }
                None => {
                    shared.discard(&session);
                    if !into.is_empty() {
                        return Ok(Fetched::More);
                    }
                    if session.is_alive() {
                        shared.error("the broker cancelled the consumer");
                        return Err(FetchError::Cancelled);
                    }
                    shared.error("the connection closed");
                    return Err(FetchError::Disconnected);
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
        let deliveries = self.source.shared.in_flight.settle_all(tags);
        let released = deliveries
            .into_iter()
            .flatten()
            .map(|delivery| async move { delivery.acker.nack(requeue()).await });
        for result in futures::future::join_all(released).await {
            if let Err(error) = result {
                // The channel is gone: the broker took the messages back with it.
                tracing::debug!(%error, "RabbitMQ: releasing a message given back failed");
            }
        }
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
