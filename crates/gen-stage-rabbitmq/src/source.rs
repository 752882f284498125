//! The source: a connection and its consuming channel (remade after a failure),
//! shared by every producer a pipeline makes of it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gen_stage::source::FetchProducer;
use gen_stage_pipeline::{InFlight, SourceHealth, SourceStatus};
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::AMQPUri;
use lapin::{Acker, ConnectionProperties};

use crate::error::{ConnectError, FetchError};
use crate::fetch::RabbitFetch;
use crate::message::RabbitMessage;
use crate::options::RabbitOptions;
use crate::session::Session;

/// A RabbitMQ queue as a pipeline's source: make producers of it with
/// [`producer`](RabbitSource::producer), as many as the pipeline runs; they share
/// its connection, its consumer and its in-flight budget. Cloning is cheap and
/// shares everything.
#[derive(Clone)]
pub struct RabbitSource {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for RabbitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitSource")
            .field("queue", &self.shared.options.queue)
            .field("state", &self.state())
            .finish()
    }
}

/// What every producer and acknowledger of one source share.
pub(crate) struct Shared {
    pub(crate) options: RabbitOptions,
    uri: AMQPUri,
    properties: ConnectionProperties,
    tls: OwnedTLSConfig,
    /// The connection in use; `None` before a reconnection.
    session: Mutex<Option<Arc<Session>>>,
    /// Held while a connection is made: one at a time.
    connecting: tokio::sync::Mutex<()>,
    connections: AtomicU64,
    closed: AtomicBool,
    pub(crate) in_flight: Arc<InFlight<Delivery>>,
    counters: Mutex<Counters>,
}

/// A message delivered and not yet settled: what settles it on its channel, and
/// what a copy of it (a retry, a dead letter) is made from.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// Bound to the channel that delivered it: once that channel is gone, it sends
    /// nothing (never an outcome on another connection).
    pub(crate) acker: Acker,
    /// Its delivery tag on that channel.
    pub(crate) tag: u64,
    pub(crate) connection: u64,
    pub(crate) attempt: u32,
    pub(crate) message: RabbitMessage,
}

#[derive(Debug, Default)]
struct Counters {
    reconnect_attempt: u32,
    last_error: Option<String>,
    fetch_latency: Option<Duration>,
    acked: u64,
    voided: u64,
    failed_outcomes: u64,
    retried: u64,
    dead_lettered: u64,
}

/// What a source reports of its connection and messages, for health checks and
/// dashboards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RabbitState {
    /// Whether the connection and its consuming channel are open.
    pub connected: bool,
    /// Failed connection attempts in a row, 0 once one succeeds.
    pub reconnect_attempt: u32,
    /// The last error: of the connection, the consumer or an outcome.
    pub last_error: Option<String>,
    /// How long the last fetch waited for its first message (the broker pushes
    /// messages: an idle queue shows as a long wait).
    pub last_fetch_latency: Option<Duration>,
    /// Messages delivered and not yet settled.
    pub in_flight: usize,
    /// Messages acked (an ack or a terminate), as sent to the broker.
    pub acked: u64,
    /// Outcomes not sent: their message was settled already, or its channel was
    /// gone (the broker delivers it again; the tag means nothing on another channel).
    pub voided: u64,
    /// Outcomes that could not be sent, or copies the broker did not confirm: their
    /// messages are delivered again.
    pub failed_outcomes: u64,
    /// Retries published to a delay queue or back to the queue.
    pub retried: u64,
    /// Rejected messages copied to the dead-letter queue.
    pub dead_lettered: u64,
}

impl RabbitSource {
    /// Connects to `url` (`amqp://user:password@host:5672/vhost`, or `amqps://` for
    /// TLS with the crate's TLS feature) with the client's default properties, and
    /// declares the queues unless [`RabbitOptions::declare`] is off.
    ///
    /// # Errors
    ///
    /// [`ConnectError`]: the options, the URL, the connection, a queue, the consumer.
    pub async fn connect(url: &str, options: RabbitOptions) -> Result<RabbitSource, ConnectError> {
        Self::connect_with(
            url,
            ConnectionProperties::default(),
            OwnedTLSConfig::default(),
            options,
        )
        .await
    }

    /// Connects as [`connect`](Self::connect), with the client's own connection
    /// properties (connection name, client properties, an authentication provider)
    /// and TLS configuration (a client certificate, a private CA chain). The source
    /// keeps them to connect again after a failure; it reconnects itself, so leave
    /// the client's own recovery off.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with(
        url: &str,
        properties: ConnectionProperties,
        tls: OwnedTLSConfig,
        options: RabbitOptions,
    ) -> Result<RabbitSource, ConnectError> {
        if let Some(problem) = options.problem() {
            return Err(ConnectError::Options { problem });
        }
        let uri = url
            .parse::<AMQPUri>()
            .map_err(|problem| ConnectError::Url { problem })?;
        let source = RabbitSource {
            shared: Arc::new(Shared {
                in_flight: InFlight::new(options.max_in_flight),
                options,
                uri,
                properties,
                tls,
                session: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                connections: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                counters: Mutex::default(),
            }),
        };
        source.shared.session().await.map_err(|error| match error {
            FetchError::Reconnect(error) => error,
            other => ConnectError::Options {
                problem: other.to_string(),
            },
        })?;
        Ok(source)
    }

    /// A producer consuming the queue: hand this to
    /// [`PipelineBuilder::producer`](gen_stage_pipeline::PipelineBuilder::producer).
    pub fn producer(&self) -> FetchProducer<RabbitFetch> {
        FetchProducer::new(self.fetch_source())
    }

    /// The fetch a [`producer`](Self::producer) runs, to wrap it or drive it yourself.
    pub fn fetch_source(&self) -> RabbitFetch {
        RabbitFetch::new(self.clone())
    }

    /// The source's connection and messages now.
    pub fn state(&self) -> RabbitState {
        let shared = &self.shared;
        let counters = shared.counters();
        RabbitState {
            connected: self.is_ready(),
            reconnect_attempt: counters.reconnect_attempt,
            last_error: counters.last_error.clone(),
            last_fetch_latency: counters.fetch_latency,
            in_flight: shared.in_flight.len(),
            acked: counters.acked,
            voided: counters.voided,
            failed_outcomes: counters.failed_outcomes,
            retried: counters.retried,
            dead_lettered: counters.dead_lettered,
        }
    }

    /// Connected, with the consumer started on the queue: what a readiness probe
    /// asks.
    pub fn is_ready(&self) -> bool {
        self.shared
            .current()
            .is_some_and(|session| session.is_alive())
    }

    /// Closes the connection, after a
    /// [`Pipeline::drain`](gen_stage_pipeline::Pipeline::drain): the broker takes
    /// back what it had pushed to this instance and the pipeline never took (ready
    /// again at once, marked redelivered). Outcomes sent before are applied first;
    /// later fetches fail with [`FetchError::Closed`], and later outcomes are voided.
    ///
    /// # Errors
    ///
    /// The client's, if the connection could not be closed cleanly (the broker takes
    /// the messages back when it notices the connection gone).
    pub async fn close(&self) -> Result<(), lapin::Error> {
        // A connection being made now sees this and closes itself.
        self.shared.closed.store(true, Ordering::Release);
        let session = self.shared.lock_session().take();
        match session {
            Some(session) => session.close("closed").await,
            None => Ok(()),
        }
    }

    /// The options the source was made with.
    pub fn options(&self) -> &RabbitOptions {
        &self.shared.options
    }
}

/// The source's state in the pipeline's snapshot: register it with
/// [`PipelineBuilder::source_health`](gen_stage_pipeline::PipelineBuilder::source_health).
impl SourceHealth for RabbitSource {
    fn status(&self) -> SourceStatus {
        let state = self.state();
        let mut status = SourceStatus::new(self.shared.options.queue.clone());
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

    fn lock_session(&self) -> MutexGuard<'_, Option<Arc<Session>>> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection in use, alive or not.
    pub(crate) fn current(&self) -> Option<Arc<Session>> {
        self.lock_session().clone()
    }

    /// The connection in use, made again first if it failed.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, FetchError> {
        if let Some(session) = self.current().filter(|session| session.is_alive()) {
            return Ok(session);
        }
        let _connecting = self.connecting.lock().await;
        if self.closed.load(Ordering::Acquire) {
            return Err(FetchError::Closed);
        }
        let old = self.lock_session().take();
        if let Some(old) = old {
            if old.is_alive() {
                *self.lock_session() = Some(old.clone());
                return Ok(old);
            }
            // A connection whose channel failed may live on: closed, so that its
            // consumer gets no more messages and the broker takes back what it had.
            tokio::spawn(async move {
                let _ = old.close("replaced").await;
            });
        }
        let number = self.connections.fetch_add(1, Ordering::AcqRel) + 1;
        let timeout = self.options.connect_timeout;
        let opening = Session::open(
            number,
            &self.uri,
            &self.properties,
            &self.tls,
            &self.options,
        );
        let opened = tokio::time::timeout(timeout, opening)
            .await
            .unwrap_or(Err(ConnectError::TimedOut { after: timeout }));
        match opened {
            Ok(session) => {
                let session = Arc::new(session);
                *self.lock_session() = Some(session.clone());
                // Closed while it connected (`close` sets the flag, then takes).
                if self.closed.load(Ordering::Acquire) {
                    let taken = self.lock_session().take();
                    if let Some(taken) = taken {
                        let _ = taken.close("closed").await;
                    }
                    return Err(FetchError::Closed);
                }
                self.counters().reconnect_attempt = 0;
                Ok(session)
            }
            Err(error) => {
                self.error(&error);
                Err(FetchError::Reconnect(error))
            }
        }
    }

    /// `session` failed: the next fetch connects again.
    pub(crate) fn discard(&self, session: &Arc<Session>) {
        let mut current = self.lock_session();
        if current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, session))
        {
            *current = None;
        }
        drop(current);
        let session = session.clone();
        tokio::spawn(async move {
            let _ = session.close("failed").await;
        });
    }

    pub(crate) fn error(&self, error: impl fmt::Display) {
        self.counters().last_error = Some(error.to_string());
    }

    pub(crate) fn reconnecting(&self, attempt: u32) {
        self.counters().reconnect_attempt = attempt;
    }

    pub(crate) fn fetched_in(&self, latency: Duration) {
        self.counters().fetch_latency = Some(latency);
    }

    pub(crate) fn count_outcomes(&self, counts: OutcomeCounts) {
        let mut counters = self.counters();
        counters.acked += counts.acked;
        counters.voided += counts.voided;
        counters.failed_outcomes += counts.failed;
        counters.retried += counts.retried;
        counters.dead_lettered += counts.dead_lettered;
    }
}

/// What one acknowledger call did, for the source's counters.
#[derive(Debug, Default)]
pub(crate) struct OutcomeCounts {
    pub(crate) acked: u64,
    pub(crate) voided: u64,
    pub(crate) failed: u64,
    pub(crate) retried: u64,
    pub(crate) dead_lettered: u64,
}
