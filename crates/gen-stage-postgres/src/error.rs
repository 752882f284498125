//! The connector's errors, one per operation.

use std::fmt;

/// [`migrate`](crate::migrate) could not declare the queue's tables.
#[derive(Debug)]
pub struct SchemaError(pub(crate) tokio_postgres::Error);

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "declaring the queue's tables failed: {}", self.0)
    }
}

impl std::error::Error for SchemaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// [`enqueue`](crate::enqueue) or [`enqueue_batch`](crate::enqueue_batch) failed; in a
/// transaction of the caller's, the transaction is then aborted, as after any failed
/// statement.
#[derive(Debug)]
#[non_exhaustive]
pub enum EnqueueError {
    /// The insert failed (for example, the table does not exist), or its result was
    /// not the schema's.
    Database(tokio_postgres::Error),
    /// The insert returned no id (a table whose rules or triggers drop inserts).
    NoId,
}

impl fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnqueueError::Database(error) => write!(f, "enqueueing failed: {error}"),
            EnqueueError::NoId => f.write_str("enqueueing returned no job id"),
        }
    }
}

impl std::error::Error for EnqueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EnqueueError::Database(error) => Some(error),
            EnqueueError::NoId => None,
        }
    }
}

/// [`PgQueue::connect`](crate::PgQueue::connect) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server could not be reached, or refused the connection.
    Connect(tokio_postgres::Error),
    /// The queue's tables could not be declared.
    Schema(SchemaError),
    /// The options cannot work.
    Options(&'static str),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Connect(error) => write!(f, "connecting to PostgreSQL failed: {error}"),
            ConnectError::Schema(error) => error.fmt(f),
            ConnectError::Options(why) => write!(f, "invalid queue options: {why}"),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Connect(error) => Some(error),
            ConnectError::Schema(error) => Some(error),
            ConnectError::Options(_) => None,
        }
    }
}

/// A fetch (a claim of due jobs) failed; the producer retries it after the queue's
/// [`Backoff`](crate::Backoff), reconnecting first if the connection is gone.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// Connecting (or listening for enqueues) failed.
    Connect(tokio_postgres::Error),
    /// The claim query failed.
    Claim(tokio_postgres::Error),
    /// The task running the claim ended without an answer (the runtime shuts down).
    Interrupted,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Connect(error) => write!(f, "connecting to PostgreSQL failed: {error}"),
            FetchError::Claim(error) => write!(f, "claiming due jobs failed: {error}"),
            FetchError::Interrupted => f.write_str("claiming due jobs was interrupted"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Connect(error) | FetchError::Claim(error) => Some(error),
            FetchError::Interrupted => None,
        }
    }
}
