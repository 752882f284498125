//! A queue table as a pipeline's source: the connection settings, the jobs in flight
//! over all its producers, and what it reports of its connection.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use gen_stage::source::FetchProducer;
use gen_stage_pipeline::{AckGroup, SourceHealth, SourceStatus};
use tokio::sync::Notify;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Row, Socket};

use crate::acker::PgAcker;
use crate::error::ConnectError;
use crate::fetch::PgFetch;
use crate::options::PgQueueOptions;
use crate::schema::migrate;

/// Opens a connection; notifications on it wake `woken`, if given.
type Connect = Arc<
    dyn Fn(Option<Arc<Notify>>) -> BoxFuture<'static, Result<Client, tokio_postgres::Error>>
        + Send
        + Sync,
>;

/// A PostgreSQL table of jobs, consumed by a pipeline.
///
/// Each [`producer`](PgQueue::producer) claims due jobs (`SELECT … FOR UPDATE SKIP
/// LOCKED`) as the pipeline asks for them, leases them to this consumer, and hands
/// them on as [`Message`](gen_stage_pipeline::Message)s of their payload; outcomes
/// settle them in the table:
///
/// | outcome | in the table |
/// | --- | --- |
/// | ack, terminate | the row is deleted |
/// | retry after a delay | due again after the delay (`run_at`), lease dropped; by the server's clock, to within about 20 ms |
/// | release | due again now |
/// | reject | moved to `<name>_dead` with its attempts and error |
///
/// An outcome counts only for the lease it settles: a job whose lease ran out and
/// that another consumer claimed since is not touched, and the outcome is counted
/// as voided ([`PgQueueState::voided`]). Leases of jobs in flight are renewed, so a
/// long handler keeps its job; a consumer that dies leaves its jobs to come due
/// again when their leases end.
#[derive(Clone)]
pub struct PgQueue {
    pub(crate) inner: Arc<Inner>,
    pub(crate) group: Arc<AckGroup>,
}

impl fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgQueue")
            .field("table", &self.inner.options.table)
            .field("consumer", &self.inner.options.consumer)
            .field("state", &self.state())
            .finish()
    }
}

/// What every producer and the acknowledger of one queue share.
pub(crate) struct Inner {
    pub(crate) options: PgQueueOptions,
    connect: Connect,
    pub(crate) in_flight: Mutex<InFlight>,
    /// Woken when jobs in flight settle, for a producer waiting for budget.
    pub(crate) budget_freed: Notify,
    /// The connection outcomes and lease renewals go through; `None` once it failed.
    control: tokio::sync::Mutex<Option<Arc<Client>>>,
    state: Mutex<PgQueueState>,
    /// Whether the task renewing leases runs.
    pub(crate) renewing: std::sync::atomic::AtomicBool,
    /// Dropped with the queue: the task renewing leases ends at once.
    pub(crate) gone: tokio::sync::watch::Sender<()>,
}

/// The deliveries claimed and not yet settled, by their ack tag (a number of the
/// queue's own, unique per delivery: one consumer may hold two deliveries of one job,
/// the first's lease having run out), each with its job's id and the attempt it was
/// claimed at (what an outcome must match); and the claims under way.
#[derive(Default)]
pub(crate) struct InFlight {
    pub(crate) jobs: HashMap<u64, (i64, i32)>,
    /// Budget set aside for claims under way.
    pub(crate) reserved: usize,
    /// The next delivery's tag.
    next_tag: u64,
}

impl InFlight {
    /// What is left of a budget of `max` jobs in flight.
    pub(crate) fn budget_left(&self, max: usize) -> usize {
        max.saturating_sub(self.jobs.len() + self.reserved)
    }
}

/// What a queue reports of its connections and jobs, for health checks and
/// dashboards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgQueueState {
    /// Whether the last attempt to reach the server (a claim, an outcome) succeeded.
    pub connected: bool,
    /// Failed connection attempts in a row, 0 once one succeeds.
    pub reconnect_attempt: u32,
    /// The last error, as text.
    pub last_error: Option<String>,
    /// How long the last claim took.
    pub last_fetch_latency: Option<Duration>,
    /// Jobs claimed and not yet settled.
    pub in_flight: usize,
    /// Outcomes not applied: their job's lease was gone (the job was claimed again
    /// after its lease ran out), or their delivery was no longer in flight (settled
    /// twice, or handed back).
    pub voided: u64,
    /// Outcomes lost with a failed statement: their jobs come due again when their
    /// leases end.
    pub failed_outcomes: u64,
}

impl PgQueue {
    /// Connects with `config` over `tls` (a [`NoTls`], or a TLS connector of
    /// `postgres-native-tls`, `postgres-openssl` or `tokio-postgres-rustls`: every
    /// option of the client is reachable through `config` and `tls`), and declares the
    /// tables unless [`PgQueueOptions::declare`] is off. The connection is checked
    /// now; producers open connections of their own, and every connection is opened
    /// again after a failure.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] if the server cannot be reached, the tables cannot be
    /// declared, or the options cannot work.
    pub async fn connect<T>(
        config: Config,
        tls: T,
        options: PgQueueOptions,
    ) -> Result<PgQueue, ConnectError>
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        if let Some(problem) = options.problem() {
            return Err(ConnectError::Options(problem));
        }
        let connect: Connect = Arc::new(move |woken| {
            let (config, tls) = (config.clone(), tls.clone());
            Box::pin(async move {
                let (client, connection) = config.connect(tls).await?;
                tokio::spawn(drive(connection, woken));
                Ok(client)
            })
        });
        let client = connect(None).await.map_err(ConnectError::Connect)?;
        if options.declare {
            migrate(&client, &options.table)
                .await
                .map_err(ConnectError::Schema)?;
        }
        let inner = Arc::new(Inner {
            options,
            connect,
            in_flight: Mutex::new(InFlight::default()),
            budget_freed: Notify::new(),
            control: tokio::sync::Mutex::new(Some(Arc::new(client))),
            state: Mutex::new(PgQueueState {
                connected: true,
                ..PgQueueState::default()
            }),
            renewing: std::sync::atomic::AtomicBool::new(false),
            gone: tokio::sync::watch::channel(()).0,
        });
        let group = AckGroup::new(PgAcker(inner.clone()));
        Ok(PgQueue { inner, group })
    }

    /// [`connect`](Self::connect) without TLS, to a URL such as
    /// `postgres://user@localhost/db` (or `host=… user=…` settings).
    ///
    /// # Errors
    ///
    /// [`ConnectError`] as for `connect`, and if the URL does not parse.
    pub async fn connect_url(url: &str, options: PgQueueOptions) -> Result<PgQueue, ConnectError> {
        let config: Config = url.parse().map_err(ConnectError::Connect)?;
        Self::connect(config, NoTls, options).await
    }

    /// A producer of this queue's jobs, with a connection of its own, for
    /// [`PipelineBuilder::producer`](gen_stage_pipeline::PipelineBuilder::producer).
    /// Every producer of one queue shares its in-flight budget.
    pub fn producer(&self) -> FetchProducer<PgFetch> {
        FetchProducer::new(self.fetch_source())
    }

    /// The [`Fetch`](gen_stage::source::Fetch) source a producer runs, with a
    /// connection of its own: for a [`FetchProducer`] configured otherwise (a
    /// prefetch, a give-back timeout), or to claim jobs by hand.
    pub fn fetch_source(&self) -> PgFetch {
        PgFetch::new(self.clone())
    }

    /// The queue's connections and jobs now.
    pub fn state(&self) -> PgQueueState {
        let mut state = self.inner.state().clone();
        state.in_flight = self.inner.lock_in_flight().jobs.len();
        state
    }

    /// Whether the last attempt to reach the server succeeded.
    pub fn is_ready(&self) -> bool {
        self.inner.state().connected
    }

    /// The options the queue runs with.
    pub fn options(&self) -> &PgQueueOptions {
        &self.inner.options
    }
}

/// The queue's state in the pipeline's snapshot: register it with
/// [`PipelineBuilder::source_health`](gen_stage_pipeline::PipelineBuilder::source_health).
impl SourceHealth for PgQueue {
    fn status(&self) -> SourceStatus {
        let state = self.state();
        let mut status = SourceStatus::new(self.inner.options.table.name());
        status.connected = state.connected;
        status.reconnect_attempt = state.reconnect_attempt;
        status.last_error = state.last_error;
        status.fetch_latency = state.last_fetch_latency;
        status.in_flight = state.in_flight;
        status.voided_acks = state.voided;
        status
    }

    fn in_flight_budget(&self) -> Option<usize> {
        Some(self.inner.options.max_in_flight)
    }
}

impl Inner {
    pub(crate) fn lock_in_flight(&self) -> MutexGuard<'_, InFlight> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, PgQueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens a connection, recording the attempt.
    #[tracing::instrument(level = "debug", name = "connect", skip_all, fields(table = %self.options.table))]
    pub(crate) async fn open(
        &self,
        woken: Option<Arc<Notify>>,
    ) -> Result<Client, tokio_postgres::Error> {
        let opened = (self.connect)(woken).await;
        match &opened {
            Ok(_) => self.reached(),
            Err(error) => self.unreached(error, true),
        }
        opened
    }

    /// The server answered.
    pub(crate) fn reached(&self) {
        let mut state = self.state();
        state.connected = true;
        state.reconnect_attempt = 0;
    }

    /// The server could not be reached, or a statement failed.
    pub(crate) fn unreached(&self, error: &tokio_postgres::Error, connecting: bool) {
        let mut state = self.state();
        state.connected = false;
        if connecting {
            state.reconnect_attempt += 1;
        }
        state.last_error = Some(error.to_string());
    }

    pub(crate) fn record_fetch_latency(&self, latency: Duration) {
        self.state().last_fetch_latency = Some(latency);
    }

    pub(crate) fn count_voided(&self, voided: u64) {
        if voided > 0 {
            self.state().voided += voided;
        }
    }

    pub(crate) fn count_failed_outcomes(&self, failed: u64) {
        self.state().failed_outcomes += failed;
    }

    /// Sets aside up to `wanted` of the in-flight budget for a claim (none if none is
    /// left): given back when the reservation is dropped, unless the claim's jobs take
    /// its place ([`Reservation::claimed`]). A claim cancelled midway frees its budget.
    pub(crate) fn reserve(self: &Arc<Self>, wanted: usize) -> Reservation {
        let mut in_flight = self.lock_in_flight();
        let granted = wanted.min(in_flight.budget_left(self.options.max_in_flight));
        in_flight.reserved += granted;
        Reservation {
            inner: self.clone(),
            granted,
        }
    }

    /// Takes deliveries out of flight: each tag's job id and attempt, where it was in
    /// flight.
    pub(crate) fn settle(&self, tags: impl IntoIterator<Item = u64>) -> Vec<Option<(i64, i32)>> {
        let settled: Vec<_> = {
            let mut in_flight = self.lock_in_flight();
            tags.into_iter()
                .map(|tag| in_flight.jobs.remove(&tag))
                .collect()
        };
        self.budget_freed.notify_waiters();
        settled
    }

    /// Runs `statement` on the control connection, the one outcomes, renewals and
    /// hand-backs go through (opened again if it closed; statements on it run side by
    /// side, the client pipelining them), within the lease or 10 s if the lease is
    /// shorter (a renewal later than the lease is of no use; a busy server gets some
    /// slack): a connection that stops answering is given up and opened again next
    /// time.
    pub(crate) async fn on_control(
        &self,
        statement: &str,
        parameters: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, ControlError> {
        let client = self.control().await.map_err(ControlError::Database)?;
        self.within_lease(&client, client.query(statement, parameters))
            .await
    }

    /// The control connection, opened again if it closed.
    async fn control(&self) -> Result<Arc<Client>, tokio_postgres::Error> {
        let mut control = self.control.lock().await;
        if let Some(client) = control.as_ref().filter(|client| !client.is_closed()) {
            return Ok(client.clone());
        }
        let client = Arc::new(self.open(None).await?);
        *control = Some(client.clone());
        Ok(client)
    }

    /// Awaits `statement`, made on `client` (the control connection), within the
    /// limit [`Self::on_control`] says.
    async fn within_lease<R>(
        &self,
        client: &Arc<Client>,
        statement: impl Future<Output = Result<R, tokio_postgres::Error>>,
    ) -> Result<R, ControlError> {
        let limit = self.options.lease.max(Duration::from_secs(10));
        match tokio::time::timeout(limit, statement).await {
            Ok(Ok(result)) => {
                self.reached();
                Ok(result)
            }
            Ok(Err(error)) => {
                self.unreached(&error, false);
                Err(ControlError::Database(error))
            }
            Err(_) => {
                let mut control = self.control.lock().await;
                if control
                    .as_ref()
                    .is_some_and(|held| Arc::ptr_eq(held, client))
                {
                    *control = None;
                }
                drop(control);
                let mut state = self.state();
                state.connected = false;
                state.last_error = Some(ControlError::TimedOut.to_string());
                Err(ControlError::TimedOut)
            }
        }
    }
}

/// A statement on the control connection failed.
#[derive(Debug)]
pub(crate) enum ControlError {
    Database(tokio_postgres::Error),
    /// No answer within the lease.
    TimedOut,
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::Database(error) => error.fmt(f),
            ControlError::TimedOut => f.write_str("the server did not answer within the lease"),
        }
    }
}

impl std::error::Error for ControlError {}

/// Budget set aside for one claim.
pub(crate) struct Reservation {
    inner: Arc<Inner>,
    pub(crate) granted: usize,
}

impl Reservation {
    /// The claim took `jobs` (id, attempt): they are in flight now, in the
    /// reservation's place; returns each one's tag. What the claim did not use is
    /// free again.
    pub(crate) fn claimed(mut self, jobs: impl IntoIterator<Item = (i64, i32)>) -> Vec<u64> {
        let tags = {
            let mut in_flight = self.inner.lock_in_flight();
            in_flight.reserved -= std::mem::take(&mut self.granted);
            let mut tags = Vec::new();
            for job in jobs {
                let tag = in_flight.next_tag;
                in_flight.next_tag += 1;
                in_flight.jobs.insert(tag, job);
                tags.push(tag);
            }
            tags
        };
        // Budget the claim did not use may let another producer claim.
        self.inner.budget_freed.notify_waiters();
        tags
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.granted > 0 {
            self.inner.lock_in_flight().reserved -= self.granted;
            self.inner.budget_freed.notify_waiters();
        }
    }
}

/// Drives a connection: its messages go on, notifications wake `woken`.
async fn drive<S, T>(mut connection: tokio_postgres::Connection<S, T>, woken: Option<Arc<Notify>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(_))) => {
                if let Some(woken) = &woken {
                    woken.notify_one();
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tracing::warn!(%error, "PostgreSQL connection ended");
                break;
            }
            None => break,
        }
    }
    // A producer waiting for a notification looks again, and finds the connection gone.
    if let Some(woken) = &woken {
        woken.notify_one();
    }
}
