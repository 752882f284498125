//! Ack waits renewed while messages are in flight (`+WPI`), so a long handler keeps
//! its message.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use async_nats::jetstream::AckKind;
use tracing::Instrument;

use crate::acker::send_outcomes;
use crate::source::{JetStreamSource, Shared};

/// Starts the task that renews the ack wait of the source's messages in flight, every
/// third of the ack wait, unless it runs. It ends with the source.
pub(crate) fn keep_renewing(source: &JetStreamSource) {
    let shared = &source.shared;
    if shared.renewing.swap(true, Ordering::AcqRel) {
        return;
    }
    let weak = Arc::downgrade(shared);
    let mut gone = shared.gone.subscribe();
    let every = shared.options.ack_wait / 3;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                // The source was dropped: nothing is left to renew.
                _ = gone.changed() => return,
            }
            let Some(shared) = Weak::upgrade(&weak) else {
                return;
            };
            renew_in_flight(&shared).await;
        }
    });
}

/// Tells the server work goes on for every message in flight; once it has them all,
/// their ack waits count from the round's start.
async fn renew_in_flight(shared: &Shared) {
    let started = Instant::now();
    let mut replies = Vec::new();
    shared
        .in_flight
        .for_each(|_, delivery| replies.push((delivery.reply.clone(), AckKind::Progress)));
    if replies.is_empty() {
        return;
    }
    let span = tracing::debug_span!("jetstream renew ack waits", messages = replies.len());
    match send_outcomes(&shared.client, replies)
        .instrument(span)
        .await
    {
        Ok(()) => {
            *shared
                .renewed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(started);
        }
        Err(error) => {
            tracing::warn!(%error, "JetStream: renewing ack waits failed");
            shared.connection.error(&error);
        }
    }
}
