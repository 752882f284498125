//! A producer's reads: as many entries as the pipeline asks for and the budget
//! allows, on a connection of its own; entries whose lease ran out claimed first.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gen_stage::source::{Fetch, Fetched, OnFetchError};
use gen_stage_pipeline::{AckGroup, Message, MessageId, Reservation};
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadOptions};
use redis::{AsyncCommands, RedisError, Value};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::acker::{RedisAcker, reject_malformed, release};
use crate::delivery::Delivery;
use crate::entry::{self, Identity, Parsed};
use crate::error::FetchError;
use crate::scripts::CLAIM_SCRIPT;
use crate::source::{RedisSource, Shared, millis};

/// One producer's reads of the stream (made by [`RedisSource::producer`]): each asks
/// the server for what the pipeline's demand and the source's in-flight budget allow
/// (`XREADGROUP ... COUNT n BLOCK ms`), waiting at the server up to the
/// [`block`](crate::RedisOptions::block) when nothing is there, so an idle source
/// costs one command per block and wakes as soon as an entry is added. Now and then,
/// a read first claims entries whose lease ran out (`XPENDING ... IDLE`, then
/// `XCLAIM`): those of an
/// instance that died, or that were given back.
///
/// Each message's [`Metadata`](gen_stage_pipeline::Metadata) carries the entry id
/// (the first entry's, for a retry: stable across retries) as its id, and the
/// attempt: the group's delivery count, plus the attempts before a retry.
///
/// Reads run on a task of their own: a fetch the pipeline cancels (at a drain) loses
/// nothing; what the read brings after is given back.
pub struct RedisFetch {
    source: RedisSource,
    group: Arc<AckGroup>,
    /// This producer's connection for blocking reads, made on first use and again
    /// after a failure.
    reader: Option<MultiplexedConnection>,
    read: Option<Read>,
    /// Entries a read brought beyond what the fetch that took them asked for.
    held: VecDeque<Message<StreamId>>,
}

impl std::fmt::Debug for RedisFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFetch")
            .field("source", &self.source)
            .field("reading", &self.read.is_some())
            .field("held", &self.held.len())
            .finish()
    }
}

/// A read under way, with the budget it reserved (the pipeline's, and the
/// server's: `asked` entries).
struct Read {
    task: JoinHandle<Result<Got, RedisError>>,
    reservation: Reservation<Delivery>,
    asked: usize,
}

/// The most entries one sweep page claims.
const CLAIM_AT_ONCE: usize = 1000;

/// What one read brought.
struct Got {
    parsed: Parsed,
    /// When the read was sent.
    sent_at: Instant,
    /// How long it took, if it did not wait at the server.
    latency: Option<Duration>,
    /// Whether the entries were claimed (their lease ran out) rather than new.
    claimed: bool,
}

impl Got {
    /// How many entries the read brought, handed over or not.
    fn brought(&self) -> usize {
        self.parsed.taken.len() + self.parsed.malformed.len()
    }

    /// The entries that cannot be handed to the pipeline, as deliveries to reject.
    fn malformed(&self) -> Vec<Delivery> {
        self.parsed
            .malformed
            .iter()
            .map(|&(id, count)| Delivery::new(id, count, 0, id, self.sent_at))
            .collect()
    }
}

/// The delivery of an entry read at `sent_at`.
fn delivery_of(identity: &Identity, count: u64, sent_at: Instant) -> Delivery {
    Delivery::new(
        identity.id,
        count,
        identity.attempt,
        identity.stable(),
        sent_at,
    )
}

impl RedisFetch {
    pub(crate) fn new(source: RedisSource) -> Self {
        let group = AckGroup::new(RedisAcker(source.shared.clone()));
        RedisFetch {
            source,
            group,
            reader: None,
            read: None,
            held: VecDeque::new(),
        }
    }

    /// Starts a read for up to `max` entries, once budget is free.
    async fn start_read(&mut self, max: usize) -> Result<(), FetchError> {
        let shared = self.source.shared.clone();
        let reservation = loop {
            if let Some(reservation) = shared.in_flight.try_reserve(max) {
                break reservation;
            }
            shared.in_flight.budget_freed().await;
        };
        let reader = match &self.reader {
            Some(reader) => reader.clone(),
            None => {
                let options = &shared.options;
                let reader = shared
                    .commands
                    .reader(
                        options.connect_timeout,
                        options.command_timeout,
                        options.block,
                    )
                    .await;
                match reader {
                    Ok(reader) => self.reader.insert(reader).clone(),
                    Err(error) => {
                        shared.failed(&error).await;
                        return Err(FetchError::Connect(error));
                    }
                }
            }
        };
        let asked = shared.server_budget.take(reservation.granted()).await;
        let task = tokio::spawn(read(shared, reader, asked));
        self.read = Some(Read {
            task,
            reservation,
            asked,
        });
        Ok(())
    }

    /// Takes what a read brought into flight: into `into` while it is under `max`,
    /// held for the next fetch otherwise.
    fn take(
        &mut self,
        got: Got,
        mut reservation: Reservation<Delivery>,
        max: usize,
        into: &mut Vec<Message<StreamId>>,
    ) -> Vec<Delivery> {
        let mut refused = Vec::new();
        for mut taken in got.parsed.taken {
            let Some(identity) = Identity::take_from(&mut taken) else {
                tracing::warn!(id = %taken.entry.id, "Redis: an entry id that is not <ms>-<seq>, skipped");
                continue;
            };
            let delivery = delivery_of(&identity, taken.count, got.sent_at);
            let stable = if identity.origin.is_some() {
                identity.stable().to_string()
            } else {
                taken.entry.id.clone()
            };
            match reservation.admit(delivery) {
                Ok(tag) => {
                    let message = Message::new(taken.entry, self.group.handle(tag))
                        .with_attempt(identity.attempt)
                        .with_id(MessageId::Text(stable));
                    if into.len() < max {
                        into.push(message);
                    } else {
                        self.held.push_back(message);
                    }
                }
                // More than the read asked for: given back at once.
                Err(delivery) => refused.push(delivery),
            }
        }
        refused
    }
}

/// One read on `reader`: a page of the sweep for entries whose lease ran out, when
/// one is due and finds any; new entries otherwise.
async fn read(
    shared: Arc<Shared>,
    mut reader: MultiplexedConnection,
    count: usize,
) -> Result<Got, RedisError> {
    let options = &shared.options;
    let sent_at = Instant::now();
    if let Some(sweep) = SweepPage::start(&shared, sent_at) {
        let max = count.min(CLAIM_AT_ONCE);
        let span = tracing::debug_span!("redis claim", stream = %options.stream, max);
        let answer: Vec<Value> = CLAIM_SCRIPT
            .key(&options.stream)
            .arg(&options.group)
            .arg(&options.consumer)
            .arg(millis(options.lease))
            .arg(&sweep.cursor)
            .arg(max)
            .invoke_async(&mut reader)
            .instrument(span)
            .await?;
        let mut answer = answer.into_iter();
        let cursor = answer
            .next()
            .and_then(|cursor| redis::from_redis_value::<String>(cursor).ok())
            .unwrap_or_else(|| "-".to_owned());
        sweep.done(cursor);
        let parsed = entry::claimed(answer.collect());
        if !parsed.taken.is_empty() || !parsed.malformed.is_empty() {
            return Ok(Got {
                parsed,
                sent_at,
                latency: Some(sent_at.elapsed()),
                claimed: true,
            });
        }
    }
    let read = StreamReadOptions::default()
        .group(&options.group, &options.consumer)
        .count(count)
        .block(usize::try_from(millis(options.block)).unwrap_or(usize::MAX));
    let span = tracing::debug_span!("redis read", stream = %options.stream, max = count);
    let reply: Value = reader
        .xread_options(&[&options.stream], &[">"], &read)
        .instrument(span)
        .await?;
    let parsed = entry::read(reply);
    let latency = (!parsed.taken.is_empty()).then(|| sent_at.elapsed());
    Ok(Got {
        parsed,
        sent_at,
        latency,
        claimed: false,
    })
}

/// A page of the sweep, taken by one read at a time; given back (to be read again)
/// if the read fails.
struct SweepPage<'a> {
    shared: &'a Shared,
    cursor: String,
    done: bool,
}

impl<'a> SweepPage<'a> {
    /// The next page, if a sweep is due or under way and no other read has it.
    fn start(shared: &'a Shared, now: Instant) -> Option<SweepPage<'a>> {
        let mut sweep = shared.sweep();
        if sweep.running || (sweep.cursor == "-" && now < sweep.next_at) {
            return None;
        }
        sweep.running = true;
        Some(SweepPage {
            shared,
            cursor: sweep.cursor.clone(),
            done: false,
        })
    }

    /// The page was read: the sweep goes on from `cursor` (`-`: it is over, and
    /// the next starts a quarter of a lease from now, or at once if entries were
    /// released meanwhile).
    fn done(mut self, cursor: String) {
        let mut sweep = self.shared.sweep();
        if cursor == "-" {
            sweep.next_at = if std::mem::take(&mut sweep.again) {
                Instant::now()
            } else {
                Instant::now() + self.shared.options.lease / 4
            };
        }
        sweep.cursor = cursor;
        sweep.running = false;
        self.done = true;
    }
}

impl Drop for SweepPage<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.sweep().running = false;
        }
    }
}

/// A read under way when its fetch goes (the producer stopped or drained): what it
/// brings is given back, on a task of its own, and its budget freed after; so are
/// the entries held for a next fetch (on a task `close` waits for).
impl Drop for RedisFetch {
    fn drop(&mut self) {
        let shared = self.source.shared.clone();
        let tags = std::mem::take(&mut self.held)
            .into_iter()
            .map(|message| message.into_parts().2.into_tag());
        let held: Vec<Delivery> = shared
            .in_flight
            .settle_all(tags)
            .into_iter()
            .flatten()
            .collect();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !held.is_empty() {
            let settling = shared.clone();
            shared.in_background(&runtime, async move {
                release(&settling, held).await;
            });
        }
        // A read may wait at the server for up to a block: `close` does not wait for
        // it. What it brings is released when it returns; if the process is gone by
        // then, a restart under the same name releases it, or the lease runs out.
        let Some(Read {
            task,
            reservation,
            asked,
        }) = self.read.take()
        else {
            return;
        };
        runtime.spawn(async move {
            match task.await {
                Ok(Ok(got)) => {
                    shared
                        .server_budget
                        .give(asked.saturating_sub(got.brought()));
                    let deliveries = deliveries_of(got, &shared);
                    release(&shared, deliveries).await;
                }
                _ => shared.server_budget.give(asked),
            }
            drop(reservation);
        });
    }
}

/// The entries a read brought, as deliveries not admitted to flight (to give them
/// back); malformed ones are rejected.
fn deliveries_of(got: Got, shared: &Arc<Shared>) -> Vec<Delivery> {
    let malformed = got.malformed();
    if !malformed.is_empty() {
        let settling = shared.clone();
        shared.in_background(&tokio::runtime::Handle::current(), async move {
            reject_malformed(&settling, malformed).await;
        });
    }
    let sent_at = got.sent_at;
    got.parsed
        .taken
        .into_iter()
        .filter_map(|mut taken| {
            let identity = Identity::take_from(&mut taken)?;
            Some(delivery_of(&identity, taken.count, sent_at))
        })
        .collect()
}

impl Fetch for RedisFetch {
    type Item = Message<StreamId>;
    type Error = FetchError;

    async fn fetch(
        &mut self,
        max: usize,
        into: &mut Vec<Message<StreamId>>,
    ) -> Result<Fetched, FetchError> {
        loop {
            if !self.held.is_empty() {
                let n = max.min(self.held.len());
                into.extend(self.held.drain(..n));
                return Ok(Fetched::More);
            }
            let shared = self.source.shared.clone();
            if shared.closed.load(Ordering::Acquire) {
                return Err(FetchError::Closed);
            }
            if !shared.name_held.load(Ordering::Acquire) {
                return Err(FetchError::ConsumerTaken {
                    consumer: shared.options.consumer.clone(),
                });
            }
            let Some(read) = self.read.as_mut() else {
                self.start_read(max).await?;
                continue;
            };
            // A cancelled fetch leaves the read here, for the next one.
            let result = (&mut read.task).await;
            let Some(Read {
                reservation, asked, ..
            }) = self.read.take()
            else {
                continue;
            };
            let got = match result {
                Ok(Ok(got)) => got,
                Ok(Err(error)) => {
                    self.reader = None;
                    shared.server_budget.give(asked);
                    shared.failed(&error).await;
                    return Err(FetchError::Read(error));
                }
                Err(panicked) => {
                    self.reader = None;
                    shared.server_budget.give(asked);
                    let error = RedisError::from(std::io::Error::other(panicked.to_string()));
                    return Err(FetchError::Read(error));
                }
            };
            shared
                .server_budget
                .give(asked.saturating_sub(got.brought()));
            shared.reached();
            let claimed = if got.claimed {
                got.parsed.taken.len() as u64
            } else {
                0
            };
            shared.fetched(got.latency, claimed);
            let malformed = got.malformed();
            let refused = self.take(got, reservation, max, into);
            // Settled on a task of their own: a fetch cancelled from here on loses
            // nothing.
            if !malformed.is_empty() || !refused.is_empty() {
                let settling = shared.clone();
                shared.in_background(&tokio::runtime::Handle::current(), async move {
                    reject_malformed(&settling, malformed).await;
                    release(&settling, refused).await;
                });
            }
            // A read that found nothing waited at the server already: the producer
            // asks again.
            return Ok(Fetched::More);
        }
    }

    async fn give_back(&mut self, messages: Vec<Message<StreamId>>) {
        let tags = messages
            .into_iter()
            .map(|message| message.into_parts().2.into_tag());
        let shared = &self.source.shared;
        let deliveries = shared
            .in_flight
            .settle_all(tags)
            .into_iter()
            .flatten()
            .collect();
        release(shared, deliveries).await;
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
            tracing::error!(%error, attempt, "Redis: giving up reading");
            return OnFetchError::Stop;
        }
        let after = shared.options.backoff.delay(attempt);
        tracing::warn!(%error, attempt, ?after, "Redis: read failed, retrying");
        OnFetchError::Retry { after }
    }

    // An empty read waited at the server already.
    async fn idle(&mut self, _empty: u32) {}
}
