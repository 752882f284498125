//! Why a source did not connect, and why a fetch failed.

use std::fmt;

use async_nats::jetstream::consumer::pull::BatchError;
use gen_stage::BoxError;

/// Why [`JetStreamSource::connect`](crate::JetStreamSource::connect) (or
/// [`with_client`](crate::JetStreamSource::with_client)) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The options cannot work (an ack wait under 1 s, a budget of 0, no names).
    Options {
        /// What is wrong.
        problem: String,
    },
    /// The server could not be reached, or refused the credentials.
    Connect(async_nats::ConnectError),
    /// The stream could not be declared or found (JetStream off, no rights, no such
    /// stream with declaring off, a subject another stream holds).
    Stream {
        /// The stream.
        stream: String,
        /// The server's or the client's error.
        error: BoxError,
    },
    /// The durable consumer could not be declared or found.
    Consumer {
        /// The consumer.
        consumer: String,
        /// The server's or the client's error.
        error: BoxError,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Options { problem } => write!(f, "invalid JetStream options: {problem}"),
            ConnectError::Connect(error) => write!(f, "cannot connect to NATS: {error}"),
            ConnectError::Stream { stream, error } => {
                write!(f, "JetStream stream {stream:?} is not usable: {error}")
            }
            ConnectError::Consumer { consumer, error } => {
                write!(f, "JetStream consumer {consumer:?} is not usable: {error}")
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Options { .. } => None,
            ConnectError::Connect(error) => Some(error),
            ConnectError::Stream { error, .. } | ConnectError::Consumer { error, .. } => {
                Some(error.as_ref())
            }
        }
    }
}

/// Why [`JetStreamSource::flush`](crate::JetStreamSource::flush) could not confirm
/// that the server has every outcome.
#[derive(Debug)]
#[non_exhaustive]
pub enum FlushError {
    /// The connection failed.
    Connection(BoxError),
    /// The server did not answer in time (the connection may be down, the client
    /// waiting for it).
    TimedOut {
        /// The time allowed.
        after: std::time::Duration,
    },
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushError::Connection(error) => write!(f, "flushing outcomes to NATS failed: {error}"),
            FlushError::TimedOut { after } => {
                write!(f, "NATS did not confirm the outcomes within {after:?}")
            }
        }
    }
}

impl std::error::Error for FlushError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FlushError::Connection(error) => Some(error.as_ref()),
            FlushError::TimedOut { .. } => None,
        }
    }
}

/// Why a pull from the consumer failed. The producer logs it and pulls again after the
/// source's [`Backoff`](gen_stage_pipeline::Backoff); messages of the failed pull
/// that never arrived are delivered again after the ack wait.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// The client is not connected: no pull is made (a request queued while
    /// disconnected would be sent after the reconnection, to an inbox nobody reads).
    Disconnected,
    /// The pull request could not be made (the client's connection is closed).
    Request(BatchError),
    /// The server answered the pull with an error status (a consumer deleted, a
    /// request refused).
    Pull(BoxError),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Disconnected => f.write_str("not connected to NATS: no pull made"),
            FetchError::Request(error) => write!(f, "JetStream pull request failed: {error}"),
            FetchError::Pull(error) => write!(f, "JetStream pull failed: {error}"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Disconnected => None,
            FetchError::Request(error) => Some(error),
            FetchError::Pull(error) => Some(error.as_ref()),
        }
    }
}
