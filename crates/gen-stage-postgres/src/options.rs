//! What a queue's consumer is configured with.

use std::time::Duration;

use crate::table::QueueTable;
use gen_stage_pipeline::Backoff;

/// How a [`PgQueue`](crate::PgQueue) consumes its table.
///
/// ```
/// use std::time::Duration;
/// use gen_stage_postgres::{PgQueueOptions, QueueTable};
///
/// let options = PgQueueOptions::new(QueueTable::new("emails")?)
///     .consumer("mailer-1")
///     .lease(Duration::from_secs(60))
///     .max_in_flight(500);
/// assert_eq!(options.consumer_name(), "mailer-1");
/// # Ok::<(), gen_stage_postgres::TableNameError>(())
/// ```
#[derive(Clone, Debug)]
pub struct PgQueueOptions {
    pub(crate) table: QueueTable,
    pub(crate) consumer: String,
    pub(crate) lease: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) poll_interval: Duration,
    pub(crate) declare: bool,
    pub(crate) backoff: Backoff,
}

impl PgQueueOptions {
    /// Consumes `table`, with the defaults: a consumer name made of the host's process
    /// id and a random suffix, a 30 s lease, 1000 jobs in flight, a 5 s poll interval
    /// behind `LISTEN`, the tables declared at connect, [`Backoff::default`].
    pub fn new(table: QueueTable) -> Self {
        PgQueueOptions {
            table,
            consumer: format!("gen-stage-{}-{:08x}", std::process::id(), random_suffix()),
            lease: Duration::from_secs(30),
            max_in_flight: 1000,
            poll_interval: Duration::from_secs(5),
            declare: true,
            backoff: Backoff::default(),
        }
    }

    /// The name this consumer leases jobs under (the `leased_by` column): name each
    /// instance, so that an operator can tell who holds what.
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// How long a claimed job stays leased: while a job is in flight its lease is
    /// renewed every third of this; a job whose consumer died is due again when its
    /// lease runs out. At least 1 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The most jobs claimed and not yet settled, over every producer of this queue
    /// (checked before each claim). At least 1.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// How long an idle consumer waits for a notification before it looks for due
    /// jobs anyway (a job whose retry delay ends is due without a notification; the
    /// consumer wakes for the earliest it knows of in any case).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Whether [`PgQueue::connect`](crate::PgQueue::connect) declares the tables
    /// ([`migrate`](crate::migrate)); off for a role that may not create them, the
    /// schema being provisioned elsewhere.
    pub fn declare(mut self, declare: bool) -> Self {
        self.declare = declare;
        self
    }

    /// The wait between reconnection attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The consumer's name.
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    /// The table consumed.
    pub fn table(&self) -> &QueueTable {
        &self.table
    }

    /// What makes these options unusable, if anything.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        if self.lease < Duration::from_secs(1) {
            Some("the lease must be at least 1 s")
        } else if self.max_in_flight == 0 {
            Some("max_in_flight must be at least 1")
        } else if self.poll_interval.is_zero() {
            Some("the poll interval must not be zero")
        } else {
            None
        }
    }
}

fn random_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}
