//! A producer's pulls: as many messages as the pipeline asks for and the budget
//! allows, delivered by the server at once; one long poll at a time when idle.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::consumer::pull::Batch;
use futures::StreamExt;
use gen_stage::source::{Fetch, Fetched, OnFetchError};
use gen_stage_pipeline::{AckGroup, Message, MessageId, Reservation};
use tracing::Instrument;

use crate::acker::{JetStreamAcker, send_outcomes};
use crate::error::FetchError;
use crate::lease;
use crate::source::{Delivery, JetStreamSource};

/// One producer's pulls from the consumer (made by
/// [`JetStreamSource::producer`]): each asks the server for what the pipeline's
/// demand and the source's in-flight budget allow, and takes what is there now
/// (`no_wait`). When a pull finds nothing, the next one waits at the server for one
/// message, up to [`idle_wait`](crate::JetStreamOptions::idle_wait), so an idle
/// source costs one request per idle wait and wakes as soon as a message is
/// published.
///
/// Each message's [`Metadata`](gen_stage_pipeline::Metadata) carries its stream
/// sequence as its id (stable across deliveries) and the server's delivery count as
/// its attempt.
pub struct JetStreamFetch {
    source: JetStreamSource,
    group: Arc<AckGroup>,
    /// The pull under way: kept here, so a fetch that is dropped loses nothing.
    pull: Option<Pull>,
    /// Messages a pull delivered beyond what the fetch that took them asked for.
    held: VecDeque<Message<async_nats::Message>>,
    /// Whether the last pull found nothing: the next one waits at the server.
    idle: bool,
}

impl std::fmt::Debug for JetStreamFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamFetch")
            .field("source", &self.source)
            .field("pulling", &self.pull.is_some())
            .field("held", &self.held.len())
            .field("idle", &self.idle)
            .finish()
    }
}

struct Pull {
    batch: Batch,
    reservation: Reservation<Delivery>,
    started: Instant,
    delivered: usize,
    /// A long poll, waiting at the server for a message.
    waits: bool,
}

impl JetStreamFetch {
    pub(crate) fn new(source: JetStreamSource) -> Self {
        let group = AckGroup::new(JetStreamAcker(source.shared.clone()));
        JetStreamFetch {
            source,
            group,
            pull: None,
            held: VecDeque::new(),
            idle: false,
        }
    }

    /// Starts a pull for up to `max` messages (one if idle), once budget is free.
    async fn start_pull(&mut self, max: usize) -> Result<(), FetchError> {
        let shared = &self.source.shared;
        if shared.client.connection_state() != async_nats::connection::State::Connected {
            return Err(FetchError::Disconnected);
        }
        let want = if self.idle { 1 } else { max };
        let reservation = loop {
            if let Some(reservation) = shared.in_flight.try_reserve(want) {
                break reservation;
            }
            shared.in_flight.budget_freed().await;
        };
        let granted = reservation.granted();
        let span = tracing::debug_span!(
            "jetstream pull",
            stream = %shared.options.stream,
            consumer = %shared.options.consumer,
            max = granted,
            waits = self.idle,
        );
        let consumer = &shared.consumer;
        let wait = shared.options.idle_wait;
        let request = async {
            if self.idle {
                consumer
                    .batch()
                    .max_messages(1)
                    .expires(wait)
                    .messages()
                    .await
            } else {
                // With `no_wait` and `expires`, the server answers at once with what
                // is ready, or waits up to `expires` for the first message.
                let fetch = consumer.fetch().max_messages(granted).expires(wait);
                fetch.messages().await
            }
        };
        let batch = request.instrument(span).await.map_err(|error| {
            shared.connection.error(&error);
            FetchError::Request(error)
        })?;
        self.pull = Some(Pull {
            batch,
            reservation,
            started: Instant::now(),
            delivered: 0,
            waits: self.idle,
        });
        Ok(())
    }

    /// Takes one delivered message into flight: into `into` while it is under `max`,
    /// held for the next fetch otherwise.
    fn take(
        &mut self,
        message: async_nats::jetstream::Message,
        max: usize,
        into: &mut Vec<Message<async_nats::Message>>,
    ) {
        let shared = &self.source.shared;
        let (sequence, attempt) = match message.info() {
            Ok(info) => (
                info.stream_sequence,
                u32::try_from(info.delivered).unwrap_or(u32::MAX),
            ),
            Err(error) => {
                // Not a JetStream delivery (no ack subject): nothing could settle it.
                tracing::warn!(%error, subject = %message.subject, "JetStream: a message without delivery metadata, dropped");
                return;
            }
        };
        let message = message.message;
        let Some(reply) = message.reply.clone() else {
            return;
        };
        let Some(pull) = self.pull.as_mut() else {
            return;
        };
        pull.delivered += 1;
        let delivery = Delivery::new(reply, sequence, attempt, message.subject.clone());
        match pull.reservation.admit(delivery) {
            Ok(tag) => {
                let message = Message::new(message, self.group.handle(tag))
                    .with_attempt(attempt)
                    .with_id(MessageId::Number(sequence));
                if into.len() < max {
                    into.push(message);
                } else {
                    self.held.push_back(message);
                }
            }
            // More than the pull asked for: delivered again at once.
            Err(delivery) => {
                let client = shared.client.clone();
                tokio::spawn(async move {
                    let _ = send_outcomes(&client, [(delivery.reply, release())]).await;
                });
            }
        }
    }
}

/// A pull under way when its fetch goes (the producer stopped or drained): what it
/// still delivers is released at once, on a task of its own, rather than left to the
/// ack wait. The pull ends by itself: it asked for what was ready at the server then.
impl Drop for JetStreamFetch {
    fn drop(&mut self) {
        let Some(mut pull) = self.pull.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.source.shared.client.clone();
        runtime.spawn(async move {
            let mut replies = Vec::new();
            while let Some(Ok(message)) = pull.batch.next().await {
                if let Some(reply) = message.message.reply {
                    replies.push((reply, release()));
                }
            }
            if let Err(error) = send_outcomes(&client, replies).await {
                tracing::warn!(%error, "JetStream: releasing the messages of a stopped pull failed; they are delivered again after the ack wait");
            }
        });
    }
}

fn release() -> async_nats::jetstream::AckKind {
    async_nats::jetstream::AckKind::Nak(None)
}

impl Fetch for JetStreamFetch {
    type Item = Message<async_nats::Message>;
    type Error = FetchError;

    async fn fetch(
        &mut self,
        max: usize,
        into: &mut Vec<Message<async_nats::Message>>,
    ) -> Result<Fetched, FetchError> {
        lease::keep_renewing(&self.source);
        loop {
            if !self.held.is_empty() {
                let n = max.min(self.held.len());
                into.extend(self.held.drain(..n));
                return Ok(Fetched::More);
            }
            let pull = match self.pull.as_mut() {
                Some(pull) => pull,
                None => {
                    self.start_pull(max).await?;
                    continue;
                }
            };
            match pull.batch.next().await {
                Some(Ok(message)) => self.take(message, max, into),
                Some(Err(error)) => {
                    self.pull = None;
                    self.source.shared.connection.error(&error);
                    return Err(FetchError::Pull(error));
                }
                None => {
                    let Some(pull) = self.pull.take() else {
                        continue;
                    };
                    if pull.delivered > 0 {
                        self.source.shared.fetched_in(pull.started.elapsed());
                    }
                    if pull.delivered > 0 {
                        self.idle = false;
                        if !into.is_empty() {
                            return Ok(Fetched::More);
                        }
                    } else if pull.waits {
                        // The long poll ended empty: the producer asks again.
                        return Ok(Fetched::More);
                    } else {
                        self.idle = true;
                    }
                }
            }
        }
    }

    async fn give_back(&mut self, messages: Vec<Message<async_nats::Message>>) {
        let tags = messages
            .into_iter()
            .map(|message| message.into_parts().2.into_tag());
        let shared = &self.source.shared;
        let replies: Vec<_> = shared
            .in_flight
            .settle_all(tags)
            .into_iter()
            .flatten()
            .map(|delivery| (delivery.reply, release()))
            .collect();
        let count = replies.len() as u64;
        if let Err(error) = send_outcomes(&shared.client, replies).await {
            tracing::warn!(%error, "JetStream: releasing messages given back failed; they are delivered again after the ack wait");
            shared.count_outcomes(0, count, 0);
        }
    }

    fn on_error(&mut self, error: &FetchError, attempt: u32) -> OnFetchError {
        let after = self.source.shared.options.backoff.delay(attempt);
        tracing::warn!(%error, attempt, ?after, "JetStream: pull failed, retrying");
        OnFetchError::Retry { after }
    }

    // An empty fetch waited at the server already.
    async fn idle(&mut self, _empty: u32) {}
}
