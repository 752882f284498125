//! Ack waits renewed while messages are in flight (`+WPI`), so a long handler keeps
//! its message.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use async_nats::connection::State;
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

/// Tells the server work goes on for every message in flight whose ack wait has not
/// run out, while connected; each counts as renewed from the round's start once the
/// server has answered a request sent after them.
async fn renew_in_flight(shared: &Shared) {
    if shared.client.connection_state() != State::Connected {
        return;
    }
    let started = Instant::now();
    let ack_wait = shared.options.ack_wait;
    let mut renewing = HashMap::new();
    shared.in_flight.for_each(|tag, delivery| {
        if !delivery.lapsed(ack_wait, started) {
            renewing.insert(tag, delivery.reply.clone());
        }
    });
    // Messages settled meanwhile are left out: a `+WPI` after a nak with a delay
    // would restart the server's clock and override the delay.
    let mut still = HashSet::new();
    shared.in_flight.for_each(|tag, _| {
        still.insert(tag);
    });
    renewing.retain(|tag, _| still.contains(tag));
    if renewing.is_empty() {
        return;
    }
    let span = tracing::debug_span!("jetstream renew ack waits", messages = renewing.len());
    let replies: Vec<_> = renewing
        .values()
        .map(|reply| (reply.clone(), AckKind::Progress))
        .collect();
    let renewed = async {
        send_outcomes(&shared.client, replies).await?;
        // A request answered: the server reads a connection in order, so it has read
        // every renewal before it (a flush only says the socket took them, which a
        // connection dying at that moment can belie).
        shared.consumer.get_info().await?;
        Ok::<(), gen_stage::BoxError>(())
    };
    let within = ack_wait / 3;
    match tokio::time::timeout(within, renewed.instrument(span)).await {
        Ok(Ok(())) if shared.client.connection_state() == State::Connected => {
            shared.in_flight.for_each(|tag, delivery| {
                if renewing.contains_key(&tag) {
                    delivery.renewed(started);
                }
            });
        }
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "JetStream: renewing ack waits failed");
            shared.connection.error(&error);
        }
        Err(_) => {
            tracing::warn!(?within, "JetStream: renewing ack waits timed out");
            shared.connection.error("renewing ack waits timed out");
        }
    }
}
