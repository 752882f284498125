//! What a source does besides reading and settling, on a task of its own: it keeps
//! its consumer name and the leases of the entries it holds, adds retries back to
//! the stream when they are due, and forgets consumers that are gone.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::RedisError;
use tracing::Instrument;

use crate::entry::EntryId;
use crate::scripts::{FORGET_IDLE_SCRIPT, HOLD_NAME_SCRIPT, PROMOTE_SCRIPT, RENEW_SCRIPT};
use crate::source::{Shared, millis};

/// The most retries added back to the stream in one script.
const PROMOTE_AT_ONCE: u64 = 1000;

/// Starts the upkeep task of a new source. It ends when the source is dropped or
/// closed.
pub(crate) fn start(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    let wake = shared.wake.clone();
    let mut gone = shared.gone.subscribe();
    let options = &shared.options;
    let renew_every = options.lease / 3;
    let forget_every = options
        .forget_consumers_after
        .map(|idle| (idle / 4).max(renew_every).min(Duration::from_secs(300)));
    tokio::spawn(async move {
        let started = Instant::now();
        let mut next_renewal = started + renew_every;
        // At once: retries that instances which stopped left waiting.
        let mut next_promotion = started;
        let mut next_forget = started;
        loop {
            let wake_at = next_renewal.min(next_promotion);
            let woken = tokio::select! {
                () = tokio::time::sleep_until(wake_at.into()) => false,
                () = wake.notified() => true,
                _ = gone.changed() => return,
            };
            let Some(shared) = Weak::upgrade(&weak) else {
                return;
            };
            // `close` takes this for good once it is called.
            let _round = shared.upkeep_round.lock().await;
            if shared.closed.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            if now >= next_renewal {
                keep_name(&shared).await;
                renew_leases(&shared).await;
                next_renewal = now + renew_every;
            }
            if woken || now >= next_promotion {
                next_promotion = promote_due_retries(&shared).await;
            }
            if let Some(every) = forget_every.filter(|_| now >= next_forget) {
                forget_idle_consumers(&shared).await;
                next_forget = now + every;
            }
        }
    });
}

/// Renews the hold on the consumer name; records whether another process took it.
async fn keep_name(shared: &Shared) {
    let options = &shared.options;
    let held = async {
        let mut connection = shared.commands.get().await?;
        HOLD_NAME_SCRIPT
            .key(options.owner_key())
            .arg(&shared.token)
            .arg(millis(options.lease))
            .invoke_async::<u8>(&mut connection)
            .await
    }
    .instrument(tracing::debug_span!("redis hold consumer name"))
    .await;
    match held {
        Ok(held) => {
            shared.reached();
            let was = shared.name_held.swap(held == 1, Ordering::AcqRel);
            if was && held != 1 {
                tracing::error!(consumer = %options.consumer, "Redis: another process took the consumer name; this one stops reading");
                shared.error("another process took the consumer name");
            }
        }
        Err(error) => failed(shared, "renewing the consumer name", &error).await,
    }
}

/// Restarts the lease of every entry held for a third of it, if still this
/// consumer's; marks the others lost (their outcomes are then checked, and voided).
async fn renew_leases(shared: &Shared) {
    let options = &shared.options;
    let started = Instant::now();
    let mut renewing = Vec::new();
    shared.in_flight.for_each(|_, delivery| {
        if delivery.held_for(started) >= options.lease / 4 {
            renewing.push((delivery.id, delivery.count));
        }
    });
    if renewing.is_empty() {
        return;
    }
    let span = tracing::debug_span!("redis renew leases", entries = renewing.len());
    let answer = async {
        let mut connection = shared.commands.get().await?;
        let mut script = RENEW_SCRIPT.key(&options.stream);
        script.arg(&options.group).arg(&options.consumer);
        for (id, count) in &renewing {
            script.arg(id).arg(count);
        }
        script
            .invoke_async::<(Vec<usize>, Vec<usize>)>(&mut connection)
            .await
    }
    .instrument(span)
    .await;
    let (renewed, trimmed) = match answer {
        Ok(answer) => answer,
        Err(error) => return failed(shared, "renewing leases", &error).await,
    };
    shared.reached();
    // By position, so by id and delivery count: this process may hold an older
    // delivery of the same entry too.
    let at = |positions: Vec<usize>| -> HashSet<(EntryId, u64)> {
        positions
            .into_iter()
            .filter_map(|position| renewing.get(position.checked_sub(1)?).copied())
            .collect()
    };
    let (renewed, trimmed) = (at(renewed), at(trimmed));
    let asked: HashSet<(EntryId, u64)> = renewing.into_iter().collect();
    let mut lost = 0;
    shared.in_flight.for_each(|_, delivery| {
        let key = (delivery.id, delivery.count);
        if renewed.contains(&key) {
            delivery.renewed(started);
        } else if trimmed.contains(&key) {
            delivery.trim();
        } else if asked.contains(&key) && delivery.lose() {
            lost += 1;
        }
    });
    if !trimmed.is_empty() {
        tracing::warn!(
            entries = trimmed.len(),
            "Redis: entries held were trimmed from the stream; acked"
        );
    }
    if lost > 0 {
        tracing::warn!(
            lost,
            "Redis: entries this consumer held were claimed by another (its lease ran out)"
        );
        shared.lost(lost);
    }
}

/// Adds the retries that are due back to the stream; answers when to look again.
async fn promote_due_retries(shared: &Shared) -> Instant {
    let options = &shared.options;
    let promoted = async {
        let mut connection = shared.commands.get().await?;
        PROMOTE_SCRIPT
            .key(&options.stream)
            .key(&options.delayed_key)
            .arg(PROMOTE_AT_ONCE)
            .invoke_async::<(u64, i64)>(&mut connection)
            .await
    }
    .instrument(tracing::debug_span!("redis promote retries"))
    .await;
    let now = Instant::now();
    match promoted {
        Ok((moved, _)) if moved >= PROMOTE_AT_ONCE => now,
        // The next one waits `next` ms; one another instance adds meanwhile is found
        // within a read's block at the latest.
        Ok((_, next)) => {
            shared.reached();
            let next = u64::try_from(next).map_or(options.block, Duration::from_millis);
            now + next.min(options.block)
        }
        Err(error) => {
            failed(shared, "adding due retries back", &error).await;
            now + options.block
        }
    }
}

/// Removes consumers of the group with nothing pending that have not read for the
/// configured time.
async fn forget_idle_consumers(shared: &Shared) {
    let options = &shared.options;
    let Some(idle) = options.forget_consumers_after else {
        return;
    };
    let removed = async {
        let mut connection = shared.commands.get().await?;
        FORGET_IDLE_SCRIPT
            .key(&options.stream)
            .arg(&options.group)
            .arg(millis(idle))
            .arg(&options.consumer)
            .invoke_async::<u64>(&mut connection)
            .await
    }
    .instrument(tracing::debug_span!("redis forget idle consumers"))
    .await;
    match removed {
        Ok(removed) => {
            shared.reached();
            if removed > 0 {
                tracing::info!(removed, group = %options.group, "Redis: consumers idle with nothing pending removed from the group");
            }
        }
        Err(error) => failed(shared, "removing idle consumers", &error).await,
    }
}

async fn failed(shared: &Shared, doing: &str, error: &RedisError) {
    tracing::warn!(%error, "Redis: {doing} failed");
    shared.failed(error).await;
}
