//! The source: one connection, one stream and its durable pull consumer, shared by
//! every producer a pipeline makes of it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::{Client, ConnectOptions, Event, ServerAddr, Subject, ToServerAddrs, jetstream};
use gen_stage::source::FetchProducer;
use gen_stage_pipeline::{InFlight, SourceHealth, SourceStatus};

use crate::error::{ConnectError, FlushError};
use crate::fetch::JetStreamFetch;
use crate::options::JetStreamOptions;

/// A JetStream stream and its durable pull consumer as a pipeline's source: make
/// producers of it with [`producer`](JetStreamSource::producer), as many as the
/// pipeline runs; they share its connection and its in-flight budget. Cloning is
/// cheap and shares everything.
#[derive(Clone)]
pub struct JetStreamSource {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for JetStreamSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamSource")
            .field("stream", &self.shared.options.stream)
            .field("consumer", &self.shared.options.consumer)
            .field("state", &self.state())
            .finish()
    }
}

/// What every producer and acknowledger of one source share.
pub(crate) struct Shared {
    pub(crate) options: JetStreamOptions,
    pub(crate) client: Client,
    pub(crate) jetstream: jetstream::Context,
    pub(crate) stream: jetstream::stream::Stream,
    pub(crate) consumer: PullConsumer,
    pub(crate) in_flight: Arc<InFlight<Delivery>>,
    pub(crate) connection: Arc<ConnectionLog>,
    counters: Mutex<Counters>,
    /// Whether the task renewing ack waits runs.
    pub(crate) renewing: AtomicBool,
    /// Dropped with the source: the renewing task ends at once.
    pub(crate) gone: tokio::sync::watch::Sender<()>,
}

/// A message delivered and not yet settled: where its outcome goes, and what says
/// whether its ack wait may have run out.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The `$JS.ACK...` subject its outcome is published to.
    pub(crate) reply: Subject,
    pub(crate) sequence: u64,
    pub(crate) attempt: u32,
    pub(crate) subject: Subject,
    pub(crate) fetched: Instant,
    /// When, after `fetched`, the last renewal that reached the server began (ms).
    renewed_after_ms: AtomicU64,
    /// Its ack wait ran out once: a later renewal cannot win it back (the server may
    /// have delivered it again meanwhile).
    lapsed: AtomicBool,
}

impl Delivery {
    pub(crate) fn new(reply: Subject, sequence: u64, attempt: u32, subject: Subject) -> Self {
        Delivery {
            reply,
            sequence,
            attempt,
            subject,
            fetched: Instant::now(),
            renewed_after_ms: AtomicU64::new(0),
            lapsed: AtomicBool::new(false),
        }
    }

    /// Whether its ack wait may have run out by `now`: neither its delivery nor a
    /// renewal that reached the server lies within `ack_wait` of it, now or before.
    pub(crate) fn lapsed(&self, ack_wait: Duration, now: Instant) -> bool {
        if self.lapsed.load(Ordering::Acquire) {
            return true;
        }
        let renewed = Duration::from_millis(self.renewed_after_ms.load(Ordering::Acquire));
        let lapsed = now.saturating_duration_since(self.fetched + renewed) >= ack_wait;
        if lapsed {
            self.lapsed.store(true, Ordering::Release);
        }
        lapsed
    }

    /// A renewal that began at `at` reached the server.
    pub(crate) fn renewed(&self, at: Instant) {
        let after = at.saturating_duration_since(self.fetched).as_millis();
        self.renewed_after_ms
            .fetch_max(u64::try_from(after).unwrap_or(u64::MAX), Ordering::AcqRel);
    }
}

/// The connection's events, as the client's callbacks report them.
#[derive(Debug, Default)]
pub(crate) struct ConnectionLog(Mutex<ConnectionEvents>);

#[derive(Debug, Default)]
struct ConnectionEvents {
    reconnect_attempt: u32,
    last_error: Option<String>,
}

impl ConnectionLog {
    fn lock(&self) -> MutexGuard<'_, ConnectionEvents> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reconnecting(&self, attempt: usize) {
        self.lock().reconnect_attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
    }

    fn event(&self, event: &Event) {
        let mut events = self.lock();
        match event {
            Event::Connected => events.reconnect_attempt = 0,
            Event::Disconnected => events.last_error = Some("disconnected".into()),
            Event::ServerError(error) => events.last_error = Some(error.to_string()),
            Event::ClientError(error) => events.last_error = Some(error.to_string()),
            _ => {}
        }
    }

    pub(crate) fn error(&self, error: impl fmt::Display) {
        self.lock().last_error = Some(error.to_string());
    }
}

#[derive(Debug, Default)]
struct Counters {
    fetch_latency: Option<Duration>,
    voided: u64,
    failed_outcomes: u64,
    dead_lettered: u64,
}

/// What a source reports of its connection and messages, for health checks and
/// dashboards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JetStreamState {
    /// Whether the client is connected to a server.
    pub connected: bool,
    /// Failed reconnection attempts in a row, 0 once one succeeds (known only for a
    /// connection the source made).
    pub reconnect_attempt: u32,
    /// The last error: of the connection, a pull or an outcome.
    pub last_error: Option<String>,
    /// How long the last pull that did not wait for messages took.
    pub last_fetch_latency: Option<Duration>,
    /// Messages delivered and not yet settled.
    pub in_flight: usize,
    /// Outcomes not sent: their message was settled already, or its ack wait had run
    /// out (the server delivers it again; an ack now could settle that delivery).
    pub voided: u64,
    /// Outcomes that could not be sent (the connection failed): their messages are
    /// delivered again after the ack wait.
    pub failed_outcomes: u64,
    /// Rejected messages published to the dead-letter subject.
    pub dead_lettered: u64,
}

impl JetStreamSource {
    /// Connects to `servers` with `connect` (the client's own options: credentials,
    /// TLS, names; every option of the client is reachable), and declares the stream
    /// and consumer unless [`JetStreamOptions::declare`] is off. The source installs
    /// the client's reconnect-delay callback (waits from
    /// [`JetStreamOptions::backoff`]) and event callback (for its
    /// [`state`](Self::state)), replacing any set in `connect`. The client reconnects
    /// for ever, unless `connect` sets `max_reconnects`.
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: the options, the connection, the stream or the consumer.
    pub async fn connect(
        connect: ConnectOptions,
        servers: impl ToServerAddrs,
        options: JetStreamOptions,
    ) -> Result<JetStreamSource, ConnectError> {
        if let Some(problem) = options.problem() {
            return Err(ConnectError::Options { problem });
        }
        let log = Arc::new(ConnectionLog::default());
        let backoff = options.backoff;
        let attempts = log.clone();
        let events = log.clone();
        let client = connect
            .reconnect_delay_callback(move |attempt| {
                attempts.reconnecting(attempt);
                backoff.delay(u32::try_from(attempt).unwrap_or(u32::MAX))
            })
            .event_callback(move |event| {
                events.event(&event);
                std::future::ready(())
            })
            .connect(servers)
            .await
            .map_err(ConnectError::Connect)?;
        Self::start(client, log, options).await
    }

    /// Connects to the servers of `url` (`nats://host:4222`, several separated by
    /// commas), with the credentials the URL carries (`nats://user:password@host`, or
    /// `nats://token@host`) and the client's defaults otherwise; see
    /// [`connect`](Self::connect).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_url(
        url: &str,
        options: JetStreamOptions,
    ) -> Result<JetStreamSource, ConnectError> {
        Self::connect(credentials_of(url), url, options).await
    }

    /// A source on a client you connected yourself (its reconnection is yours to
    /// configure; the state's reconnect attempt stays 0).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), but for the connection.
    pub async fn with_client(
        client: Client,
        options: JetStreamOptions,
    ) -> Result<JetStreamSource, ConnectError> {
        if let Some(problem) = options.problem() {
            return Err(ConnectError::Options { problem });
        }
        Self::start(client, Arc::default(), options).await
    }

    async fn start(
        client: Client,
        connection: Arc<ConnectionLog>,
        options: JetStreamOptions,
    ) -> Result<JetStreamSource, ConnectError> {
        let jetstream = jetstream::new(client.clone());
        let stream = declare_streams(&jetstream, &options).await?;
        let consumer = declare_consumer(&stream, &options).await?;
        let (gone, _) = tokio::sync::watch::channel(());
        Ok(JetStreamSource {
            shared: Arc::new(Shared {
                in_flight: InFlight::new(options.max_in_flight),
                options,
                client,
                jetstream,
                stream,
                consumer,
                connection,
                counters: Mutex::default(),
                renewing: AtomicBool::new(false),
                gone,
            }),
        })
    }

    /// A producer pulling from the consumer: hand this to
    /// [`PipelineBuilder::producer`](gen_stage_pipeline::PipelineBuilder::producer).
    pub fn producer(&self) -> FetchProducer<JetStreamFetch> {
        FetchProducer::new(self.fetch_source())
    }

    /// The fetch a [`producer`](Self::producer) runs, to wrap it or drive it yourself.
    pub fn fetch_source(&self) -> JetStreamFetch {
        JetStreamFetch::new(self.clone())
    }

    /// The source's connection and messages now.
    pub fn state(&self) -> JetStreamState {
        let shared = &self.shared;
        let (reconnect_attempt, connection_error) = {
            let events = shared.connection.lock();
            (events.reconnect_attempt, events.last_error.clone())
        };
        let counters = shared.counters();
        JetStreamState {
            connected: shared.client.connection_state() == State::Connected,
            reconnect_attempt,
            last_error: connection_error,
            last_fetch_latency: counters.fetch_latency,
            in_flight: shared.in_flight.len(),
            voided: counters.voided,
            failed_outcomes: counters.failed_outcomes,
            dead_lettered: counters.dead_lettered,
        }
    }

    /// Connected, with the stream and consumer found: what a readiness probe asks.
    pub fn is_ready(&self) -> bool {
        self.shared.client.connection_state() == State::Connected
    }

    /// Waits, for at most `within`, until the server has every outcome sent so far.
    /// Outcomes are published as the pipeline settles messages, and the client writes
    /// them out at once; call this after
    /// [`Pipeline::drain`](gen_stage_pipeline::Pipeline::drain) and before the process
    /// exits, so that the last ones are not lost with it. The client's buffer is
    /// written out, then a request to the server answered: the server reads a
    /// connection in order, so it has read every outcome before it.
    ///
    /// # Errors
    ///
    /// [`FlushError`]: the connection is down (the client waits for it to come back;
    /// outcomes lost with the old connection are delivered again after the ack wait),
    /// or the server did not answer within `within`.
    pub async fn flush(&self, within: Duration) -> Result<(), FlushError> {
        let confirmed = async {
            self.shared
                .client
                .flush()
                .await
                .map_err(|error| FlushError::Connection(error.into()))?;
            self.shared
                .consumer
                .get_info()
                .await
                .map_err(|error| FlushError::Connection(error.into()))?;
            Ok(())
        };
        tokio::time::timeout(within, confirmed)
            .await
            .unwrap_or(Err(FlushError::TimedOut { after: within }))
    }

    /// The options the source was made with.
    pub fn options(&self) -> &JetStreamOptions {
        &self.shared.options
    }

    /// The client, to publish with or to read its statistics.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }
}

/// The source's state in the pipeline's snapshot: register it with
/// [`PipelineBuilder::source_health`](gen_stage_pipeline::PipelineBuilder::source_health).
impl SourceHealth for JetStreamSource {
    fn status(&self) -> SourceStatus {
        let state = self.state();
        let options = &self.shared.options;
        let mut status = SourceStatus::new(format!("{}/{}", options.stream, options.consumer));
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
    fn counters(&self) -> MutexGuard<'_, Counters> {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn fetched_in(&self, latency: Duration) {
        self.counters().fetch_latency = Some(latency);
    }

    pub(crate) fn count_outcomes(&self, voided: u64, failed: u64, dead_lettered: u64) {
        let mut counters = self.counters();
        counters.voided += voided;
        counters.failed_outcomes += failed;
        counters.dead_lettered += dead_lettered;
    }
}

/// The client's options with the first credentials found in `url`'s servers (the
/// client reads none from a URL itself).
fn credentials_of(url: &str) -> ConnectOptions {
    let servers = url
        .split(',')
        .filter_map(|server| server.trim().parse::<ServerAddr>().ok());
    for server in servers {
        match (server.username(), server.password()) {
            (Some(user), Some(password)) => {
                return ConnectOptions::with_user_and_password(user.into(), password.into());
            }
            (Some(token), None) => return ConnectOptions::with_token(token.into()),
            _ => {}
        }
    }
    ConnectOptions::new()
}

/// The stream (and the dead-letter stream): declared, or found.
async fn declare_streams(
    jetstream: &jetstream::Context,
    options: &JetStreamOptions,
) -> Result<jetstream::stream::Stream, ConnectError> {
    let failed = |stream: &str| {
        let stream = stream.to_owned();
        move |error: Box<dyn std::error::Error + Send + Sync>| ConnectError::Stream {
            stream,
            error,
        }
    };
    if !options.declare {
        return jetstream
            .get_stream(&options.stream)
            .await
            .map_err(|error| failed(&options.stream)(error.into()));
    }
    let stream = jetstream
        .get_or_create_stream(stream::Config {
            name: options.stream.clone(),
            subjects: options.subjects.clone(),
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|error| failed(&options.stream)(error.into()))?;
    if let Some(subject) = &options.dead_letter_subject {
        let name = format!("{}_dead", options.stream);
        jetstream
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![subject.clone()],
                storage: StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|error| failed(&name)(error.into()))?;
    }
    Ok(stream)
}

/// The durable pull consumer: declared with the options, or found.
async fn declare_consumer(
    stream: &jetstream::stream::Stream,
    options: &JetStreamOptions,
) -> Result<PullConsumer, ConnectError> {
    let name = &options.consumer;
    let found = if options.declare {
        stream
            .get_or_create_consumer(
                name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: options.ack_wait,
                    max_deliver: options.max_deliver,
                    max_ack_pending: options.ack_pending_limit(),
                    ..Default::default()
                },
            )
            .await
            .map_err(Into::into)
    } else {
        stream.get_consumer(name).await
    };
    found.map_err(|error| ConnectError::Consumer {
        consumer: name.clone(),
        error,
    })
}
