//! Why a source did not connect, and why a fetch failed.

use std::fmt;

/// Why [`RabbitSource::connect`](crate::RabbitSource::connect) failed, or a
/// reconnection.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The options cannot work (a budget of 0 or above 65 535, no queue name).
    Options {
        /// What is wrong.
        problem: String,
    },
    /// The URL is not an AMQP URL.
    Url {
        /// What the client said of it.
        problem: String,
    },
    /// The broker could not be reached, refused the credentials or the virtual host,
    /// or a channel could not be opened on it.
    Connect(lapin::Error),
    /// A queue could not be declared or found (no such queue with declaring off,
    /// declared before with other arguments, no rights).
    Queue {
        /// The queue.
        queue: String,
        /// The broker's or the client's error.
        error: lapin::Error,
    },
    /// The attempt took longer than
    /// [`RabbitOptions::connect_timeout`](crate::RabbitOptions::connect_timeout): the
    /// broker accepted the connection and did not answer in time.
    TimedOut {
        /// The timeout.
        after: std::time::Duration,
    },
    /// The consumer could not be started on the queue (an exclusive consumer holds
    /// it, no rights).
    Consume {
        /// The queue.
        queue: String,
        /// The broker's or the client's error.
        error: lapin::Error,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Options { problem } => write!(f, "invalid RabbitMQ options: {problem}"),
            ConnectError::Url { problem } => write!(f, "invalid AMQP URL: {problem}"),
            ConnectError::Connect(error) => write!(f, "cannot connect to RabbitMQ: {error}"),
            ConnectError::Queue { queue, error } => {
                write!(f, "RabbitMQ queue {queue:?} is not usable: {error}")
            }
            ConnectError::Consume { queue, error } => {
                write!(f, "cannot consume RabbitMQ queue {queue:?}: {error}")
            }
            ConnectError::TimedOut { after } => {
                write!(
                    f,
                    "RabbitMQ did not complete the connection within {after:?}"
                )
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Options { .. }
            | ConnectError::Url { .. }
            | ConnectError::TimedOut { .. } => None,
            ConnectError::Connect(error)
            | ConnectError::Queue { error, .. }
            | ConnectError::Consume { error, .. } => Some(error),
        }
    }
}

/// Why a producer's fetch failed; the producer retries after the source's
/// [`backoff`](crate::RabbitOptions::backoff), up to
/// [`max_reconnect_attempts`](crate::RabbitOptions::max_reconnect_attempts).
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// The connection was lost and could not be made again yet.
    Reconnect(ConnectError),
    /// The channel or the connection failed while consuming: what was delivered on
    /// it and not settled is redelivered by the broker.
    Consume(lapin::Error),
    /// The broker cancelled the consumer (the queue was deleted); the next fetch
    /// consumes again, declaring the queue if the source declares.
    Cancelled,
    /// The connection closed under the consumer.
    Disconnected,
    /// The source was closed with [`RabbitSource::close`](crate::RabbitSource::close).
    Closed,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Reconnect(error) => write!(f, "RabbitMQ reconnection failed: {error}"),
            FetchError::Consume(error) => write!(f, "consuming from RabbitMQ failed: {error}"),
            FetchError::Cancelled => f.write_str("RabbitMQ cancelled the consumer"),
            FetchError::Disconnected => f.write_str("the connection to RabbitMQ closed"),
            FetchError::Closed => f.write_str("the RabbitMQ source is closed"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Reconnect(error) => Some(error),
            FetchError::Consume(error) => Some(error),
            FetchError::Cancelled | FetchError::Disconnected | FetchError::Closed => None,
        }
    }
}
