//! The source: one stream, its consumer group and this instance's consumer name,
//! shared by every producer a pipeline makes of it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gen_stage::source::FetchProducer;
use gen_stage_pipeline::{InFlight, SourceHealth, SourceStatus};
use redis::aio::MultiplexedConnection;
use redis::streams::StreamInfoGroupsReply;
use redis::{Client, IntoConnectionInfo, RedisError};
use tracing::Instrument;

use crate::budget::ServerBudget;
use crate::connection::Commands;
use crate::delivery::Delivery;
use crate::error::ConnectError;
use crate::fetch::RedisFetch;
use crate::options::RedisOptions;
use crate::scripts::{HOLD_NAME_SCRIPT, LET_NAME_GO_SCRIPT, RELEASE_ALL_SCRIPT, RELEASED_CONSUMER};
use crate::upkeep;

/// A Redis stream and its consumer group as a pipeline's source, read as this
/// instance's consumer: make producers of it with
/// [`producer`](RedisSource::producer), as many as the pipeline runs; they share its
/// in-flight budget and its connection for outcomes. Cloning is cheap and shares
/// everything.
#[derive(Clone)]
pub struct RedisSource {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for RedisSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = &self.shared.options;
        f.debug_struct("RedisSource")
            .field("stream", &options.stream)
            .field("group", &options.group)
            .field("consumer", &options.consumer)
            .field("state", &self.state())
            .finish()
    }
}

/// What every producer, acknowledger and the upkeep task of one source share.
pub(crate) struct Shared {
    pub(crate) options: RedisOptions,
    pub(crate) commands: Commands,
    pub(crate) in_flight: Arc<InFlight<Delivery>>,
    /// The budget as the server sees it: reads take from it, settled entries give
    /// back once the server has answered.
    pub(crate) server_budget: ServerBudget,
    /// What this process writes to the consumer name's owner key.
    pub(crate) token: String,
    pub(crate) connected: AtomicBool,
    /// Whether this process holds the consumer name (false once another took it).
    pub(crate) name_held: AtomicBool,
    pub(crate) closed: AtomicBool,
    log: Mutex<Log>,
    /// Where the next sweep for abandoned entries starts, and when it is due.
    pub(crate) sweep: Mutex<Sweep>,
    /// Wakes the upkeep task: a retry was scheduled, or the source closed.
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Dropped with the source: the upkeep task ends at once.
    pub(crate) gone: tokio::sync::watch::Sender<()>,
    /// Held by the upkeep task for each round, and by `close` once it is called.
    pub(crate) upkeep_round: tokio::sync::Mutex<()>,
    /// Tasks settling entries outside the pipeline (releases of a dropped fetch,
    /// rejections of malformed entries): `close` waits for them.
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The sweep for entries idle past the lease, page by page through the group's
/// pending list.
#[derive(Debug)]
pub(crate) struct Sweep {
    /// Where the next page starts: `-` when a sweep is not under way, `(id` after
    /// the last page's last entry.
    pub(crate) cursor: String,
    /// When the next sweep starts (now, at first: the instance's own entries from
    /// before a restart wait there).
    pub(crate) next_at: Instant,
    /// Whether a read has the next page.
    pub(crate) running: bool,
    /// Entries were released during the sweep under way: the next starts at once.
    pub(crate) again: bool,
}

#[derive(Debug, Default)]
struct Log {
    reconnect_attempt: u32,
    last_error: Option<String>,
    fetch_latency: Option<Duration>,
    acked: u64,
    voided: u64,
    failed_outcomes: u64,
    retried: u64,
    dead_lettered: u64,
    claimed: u64,
    lost: u64,
    vanished: u64,
    malformed: u64,
    released: u64,
}

/// What a source reports of its connection and entries, for health checks and
/// dashboards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisState {
    /// Whether the last command or read reached the server.
    pub connected: bool,
    /// Failed reads in a row, 0 once one succeeds.
    pub reconnect_attempt: u32,
    /// The last error: of a connection, a read or an outcome.
    pub last_error: Option<String>,
    /// How long the last read that found entries took.
    pub last_fetch_latency: Option<Duration>,
    /// Entries read and not yet settled.
    pub in_flight: usize,
    /// Entries acknowledged: acked, terminated, or rejected with no dead-letter
    /// stream.
    pub acked: u64,
    /// Outcomes not sent: the entry was settled already, or is no longer this
    /// consumer's (another instance claimed it after its lease ran out, and settles
    /// it).
    pub voided: u64,
    /// Outcomes that could not be sent (the connection failed): the entries are
    /// claimed again once their lease runs out.
    pub failed_outcomes: u64,
    /// Entries retried: scheduled to be added back to the stream after their delay.
    pub retried: u64,
    /// Rejected entries copied to the dead-letter stream.
    pub dead_lettered: u64,
    /// Entries claimed after their lease ran out (another instance's, or this one's
    /// from before a restart).
    pub claimed: u64,
    /// Entries a renewal found claimed by another consumer while this one held them
    /// (this instance was cut off, or paused, for longer than the lease): their
    /// outcomes are voided.
    pub lost: u64,
    /// Entries whose retry or dead letter found them deleted from the stream
    /// (trimmed): acknowledged, with nothing to copy.
    pub vanished: u64,
    /// Entries that could not be handed to the pipeline (field names that are not
    /// UTF-8): rejected, to the dead-letter stream if there is one (and counted in
    /// `dead_lettered` too).
    pub malformed: u64,
    /// Entries released unhandled (given back, or released by a drain): claimable by
    /// any instance at once, their delivery count kept.
    pub released: u64,
    /// Whether this process holds its consumer name.
    pub consumer_name_held: bool,
}

/// What one settlement round changed, for [`RedisState`].
#[derive(Debug, Default)]
pub(crate) struct Settlement {
    pub(crate) acked: u64,
    pub(crate) voided: u64,
    pub(crate) failed: u64,
    pub(crate) retried: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) vanished: u64,
    pub(crate) released: u64,
}

impl RedisSource {
    /// Connects to the server at `info` (a URL such as `redis://user:password@host:6379/0`,
    /// `rediss://` for TLS with a TLS feature on, or the client's own
    /// [`ConnectionInfo`](redis::ConnectionInfo) for every other option), creates
    /// the consumer group unless [`RedisOptions::declare`] is off, takes the
    /// consumer name for this process, and makes the entries it held before a
    /// restart claimable at once.
    ///
    /// The consumer name is held with a key that expires after the lease and is
    /// renewed while the source lives: a second live process with the same name
    /// fails with [`ConnectError::ConsumerInUse`]. A crashed predecessor's hold runs
    /// out within a lease; the source waits that long for it.
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: the options, the connection, the group or the name.
    pub async fn connect(
        info: impl IntoConnectionInfo,
        options: RedisOptions,
    ) -> Result<RedisSource, ConnectError> {
        if let Some(problem) = options.problem() {
            return Err(ConnectError::Options { problem });
        }
        let client = Client::open(info).map_err(ConnectError::Connect)?;
        let commands = Commands::new(client, options.connect_timeout, options.command_timeout);
        let mut connection = commands.get().await.map_err(ConnectError::Connect)?;
        prepare_group(&mut connection, &options).await?;
        let token = process_token();
        hold_name(&mut connection, &options, &token).await?;
        let released = release_all(&mut connection, &options)
            .await
            .map_err(ConnectError::Connect)?;
        if released > 0 {
            tracing::info!(
                released,
                consumer = %options.consumer,
                "Redis: entries this consumer held before it restarted are claimable again"
            );
        }
        let shared = Arc::new(Shared {
            in_flight: InFlight::new(options.max_in_flight),
            server_budget: ServerBudget::new(options.max_in_flight),
            options,
            commands,
            token,
            connected: AtomicBool::new(true),
            name_held: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            log: Mutex::default(),
            sweep: Mutex::new(Sweep {
                cursor: "-".to_owned(),
                next_at: Instant::now(),
                running: false,
                again: false,
            }),
            wake: Arc::default(),
            gone: tokio::sync::watch::channel(()).0,
            upkeep_round: tokio::sync::Mutex::new(()),
            background: Mutex::default(),
        });
        upkeep::start(&shared);
        Ok(RedisSource { shared })
    }

    /// A producer reading the stream: hand this to
    /// [`PipelineBuilder::producer`](gen_stage_pipeline::PipelineBuilder::producer).
    pub fn producer(&self) -> FetchProducer<RedisFetch> {
        FetchProducer::new(self.fetch_source())
    }

    /// The fetch a [`producer`](Self::producer) runs, to wrap it or drive it yourself.
    pub fn fetch_source(&self) -> RedisFetch {
        RedisFetch::new(self.clone())
    }

    /// The source's connection and entries now.
    pub fn state(&self) -> RedisState {
        let shared = &self.shared;
        let log = shared.log();
        RedisState {
            connected: shared.connected.load(Ordering::Acquire),
            reconnect_attempt: log.reconnect_attempt,
            last_error: log.last_error.clone(),
            last_fetch_latency: log.fetch_latency,
            in_flight: shared.in_flight.len(),
            acked: log.acked,
            voided: log.voided,
            failed_outcomes: log.failed_outcomes,
            retried: log.retried,
            dead_lettered: log.dead_lettered,
            claimed: log.claimed,
            lost: log.lost,
            vanished: log.vanished,
            malformed: log.malformed,
            released: log.released,
            consumer_name_held: shared.name_held.load(Ordering::Acquire),
        }
    }

    /// Connected, with the group found and the consumer name held: what a readiness
    /// probe asks.
    pub fn is_ready(&self) -> bool {
        let shared = &self.shared;
        shared.connected.load(Ordering::Acquire)
            && shared.name_held.load(Ordering::Acquire)
            && !shared.closed.load(Ordering::Acquire)
    }

    /// Stops the source after a drain: producers read no more, entries still held
    /// (fetched and never settled) become claimable by the other instances at once,
    /// and the consumer name is let go, so a restart takes it without waiting.
    ///
    /// # Errors
    ///
    /// The client's error: the server could not be told; the entries are claimed
    /// once their lease runs out, and the name's hold expires after the lease.
    pub async fn close(&self) -> Result<(), RedisError> {
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        shared.wake.notify_one();
        // A round of upkeep under way finishes first: a renewal or name hold landing
        // after what follows would undo it. So do releases under way.
        let _no_upkeep = shared.upkeep_round.lock().await;
        let background = std::mem::take(
            &mut *shared
                .background
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in background {
            let _ = task.await;
        }
        let options = &shared.options;
        let span = tracing::debug_span!("redis close", consumer = %options.consumer);
        async {
            let mut connection = shared.commands.get().await?;
            release_all(&mut connection, options).await?;
            let _: u64 = LET_NAME_GO_SCRIPT
                .key(options.owner_key())
                .arg(&shared.token)
                .invoke_async(&mut connection)
                .await?;
            shared.name_held.store(false, Ordering::Release);
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// The options the source was made with.
    pub fn options(&self) -> &RedisOptions {
        &self.shared.options
    }
}

/// The source's state in the pipeline's snapshot: register it with
/// [`PipelineBuilder::source_health`](gen_stage_pipeline::PipelineBuilder::source_health).
impl SourceHealth for RedisSource {
    fn status(&self) -> SourceStatus {
        let state = self.state();
        let options = &self.shared.options;
        let mut status = SourceStatus::new(format!(
            "{}/{}/{}",
            options.stream, options.group, options.consumer
        ));
        status.connected = state.connected;
        status.reconnect_attempt = state.reconnect_attempt;
        status.last_error = state.last_error;
        status.fetch_latency = state.last_fetch_latency;
        status.in_flight = state.in_flight;
        status.voided_acks = state.voided;
        status
    }

    fn in_flight_budget(&self) -> Option<usize> {
        Some(self.shared.options.max_in_flight)
    }
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn sweep(&self) -> MutexGuard<'_, Sweep> {
        self.sweep
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A command or read reached the server.
    pub(crate) fn reached(&self) {
        self.connected.store(true, Ordering::Release);
    }

    /// A command or read failed with `error`.
    pub(crate) async fn failed(&self, error: &RedisError) {
        if crate::connection::is_connection_error(error) {
            self.connected.store(false, Ordering::Release);
        }
        self.commands.failed(error).await;
        self.error(error);
    }

    pub(crate) fn error(&self, error: impl fmt::Display) {
        self.log().last_error = Some(error.to_string());
    }

    pub(crate) fn reconnecting(&self, attempt: u32) {
        self.log().reconnect_attempt = attempt;
    }

    pub(crate) fn fetched(&self, latency: Option<Duration>, claimed: u64) {
        let mut log = self.log();
        log.reconnect_attempt = 0;
        if latency.is_some() {
            log.fetch_latency = latency;
        }
        log.claimed += claimed;
    }

    pub(crate) fn lost(&self, entries: u64) {
        self.log().lost += entries;
    }

    pub(crate) fn malformed(&self, entries: u64) {
        self.log().malformed += entries;
    }

    /// Runs `settling` on a task of its own, which `close` waits for.
    pub(crate) fn in_background(
        &self,
        runtime: &tokio::runtime::Handle,
        settling: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let mut background = self
            .background
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        background.retain(|task| !task.is_finished());
        background.push(runtime.spawn(settling));
    }

    /// Entries were released: the next read sweeps for them.
    pub(crate) fn sweep_soon(&self) {
        let mut sweep = self.sweep();
        sweep.next_at = Instant::now();
        sweep.again = true;
    }

    pub(crate) fn count(&self, settlement: &Settlement) {
        let mut log = self.log();
        log.acked += settlement.acked;
        log.voided += settlement.voided;
        log.failed_outcomes += settlement.failed;
        log.retried += settlement.retried;
        log.dead_lettered += settlement.dead_lettered;
        log.vanished += settlement.vanished;
        log.released += settlement.released;
    }
}

/// Creates the group (and the stream) if missing, or checks that it exists.
async fn prepare_group(
    connection: &mut MultiplexedConnection,
    options: &RedisOptions,
) -> Result<(), ConnectError> {
    let group_error = |error| ConnectError::Group {
        stream: options.stream.clone(),
        group: options.group.clone(),
        error,
    };
    if options.declare {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&options.stream)
            .arg(&options.group)
            .arg(&options.group_start)
            .arg("MKSTREAM")
            .query_async(connection)
            .await;
        return match created {
            Ok(()) => Ok(()),
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            Err(error) => Err(group_error(Some(error))),
        };
    }
    let groups: StreamInfoGroupsReply = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&options.stream)
        .query_async(connection)
        .await
        .map_err(|error| group_error(Some(error)))?;
    if groups
        .groups
        .iter()
        .any(|group| group.name == options.group)
    {
        Ok(())
    } else {
        Err(group_error(None))
    }
}

/// Hands every entry pending for the consumer to the released entries' consumer,
/// claimable by the next sweep; answers how many.
async fn release_all(
    connection: &mut MultiplexedConnection,
    options: &RedisOptions,
) -> Result<u64, RedisError> {
    RELEASE_ALL_SCRIPT
        .key(&options.stream)
        .arg(&options.group)
        .arg(&options.consumer)
        .arg(millis(options.lease))
        .arg(RELEASED_CONSUMER)
        .invoke_async(connection)
        .await
}

/// Takes the consumer name, waiting up to a lease (and a second) for a crashed
/// holder's hold to run out.
async fn hold_name(
    connection: &mut MultiplexedConnection,
    options: &RedisOptions,
    token: &str,
) -> Result<(), ConnectError> {
    let started = Instant::now();
    let patience = options.lease + Duration::from_secs(1);
    let mut told = false;
    loop {
        let held: u8 = HOLD_NAME_SCRIPT
            .key(options.owner_key())
            .arg(token)
            .arg(millis(options.lease))
            .invoke_async(connection)
            .await
            .map_err(ConnectError::Connect)?;
        if held == 1 {
            return Ok(());
        }
        let waited = started.elapsed();
        if waited >= patience {
            return Err(ConnectError::ConsumerInUse {
                consumer: options.consumer.clone(),
                waited,
            });
        }
        if !told {
            tracing::info!(consumer = %options.consumer, "Redis: the consumer name is held; waiting for the hold to run out");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Milliseconds, for the server.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A token no other process or source has: process id, time and a counter.
fn process_token() -> String {
    static SOURCES: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let source = SOURCES.fetch_add(1, Ordering::Relaxed);
    format!("{}-{nanos}-{source}", std::process::id())
}
