//! Why a source did not connect, and why a read failed.

use std::fmt;
use std::time::Duration;

use redis::RedisError;

/// Why [`RedisSource::connect`](crate::RedisSource::connect) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The options cannot work (a budget of 0, a lease under 300 ms, no names).
    Options {
        /// What is wrong.
        problem: String,
    },
    /// The server could not be reached in time, or refused the credentials.
    Connect(RedisError),
    /// The consumer group could not be created, or (with declaring off) does not
    /// exist; or the key holds something other than a stream.
    Group {
        /// The stream.
        stream: String,
        /// The group.
        group: String,
        /// The server's or the client's error, if it gave one.
        error: Option<RedisError>,
    },
    /// Another process holds the consumer name (two instances configured with one
    /// name, or a crashed instance's hold that had not run out within the connect
    /// timeout): each instance needs a name of its own.
    ConsumerInUse {
        /// The consumer name.
        consumer: String,
        /// How long the source waited for it.
        waited: Duration,
    },
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Options { problem } => write!(f, "invalid Redis options: {problem}"),
            ConnectError::Connect(error) => write!(f, "cannot connect to Redis: {error}"),
            ConnectError::Group {
                stream,
                group,
                error: Some(error),
            } => write!(
                f,
                "consumer group {group:?} of stream {stream:?} is not usable: {error}"
            ),
            ConnectError::Group {
                stream,
                group,
                error: None,
            } => write!(
                f,
                "consumer group {group:?} of stream {stream:?} does not exist (declaring is off)"
            ),
            ConnectError::ConsumerInUse { consumer, waited } => write!(
                f,
                "consumer name {consumer:?} is held by another process (waited {waited:?}): give each instance a name of its own"
            ),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Connect(error)
            | ConnectError::Group {
                error: Some(error), ..
            } => Some(error),
            _ => None,
        }
    }
}

/// Why a producer's read failed; the producer reconnects and reads again after the
/// source's backoff, unless [`max_reconnect_attempts`](crate::RedisOptions::max_reconnect_attempts)
/// says stop.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// A new connection for reading could not be made.
    Connect(RedisError),
    /// A read, claim or promotion failed (the connection was lost, or the server did
    /// not answer within the command timeout).
    Read(RedisError),
    /// Another process took the consumer name while this one could not renew its
    /// hold (it was cut off for longer than the lease): this one stops reading until
    /// the name is free again.
    ConsumerTaken {
        /// The consumer name.
        consumer: String,
    },
    /// The source was closed.
    Closed,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Connect(error) => write!(f, "cannot reconnect to Redis: {error}"),
            FetchError::Read(error) => write!(f, "reading the stream failed: {error}"),
            FetchError::ConsumerTaken { consumer } => write!(
                f,
                "consumer name {consumer:?} is held by another process: not reading until it is free"
            ),
            FetchError::Closed => f.write_str("the Redis source was closed"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FetchError::Connect(error) | FetchError::Read(error) => Some(error),
            FetchError::ConsumerTaken { .. } | FetchError::Closed => None,
        }
    }
}
