//! Connections to the server: one shared for outcomes and upkeep, made again
//! after it fails; one of its own for each producer's blocking reads.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError};

/// The connection outcomes, renewals and promotions go through: made on first use,
/// and again after a failure (a multiplexed connection whose socket died fails
/// every later command).
#[derive(Debug)]
pub(crate) struct Commands {
    client: Client,
    config: AsyncConnectionConfig,
    current: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Commands {
    pub(crate) fn new(
        client: Client,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> Self {
        Commands {
            config: config(connect_timeout, command_timeout),
            client,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection, made now if there is none (one attempt at a time).
    pub(crate) async fn get(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref() {
            return Ok(connection.clone());
        }
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets the connection if `error` says it is unusable: the next command makes
    /// another.
    pub(crate) async fn failed(&self, error: &RedisError) {
        if is_connection_error(error) {
            *self.current.lock().await = None;
        }
    }

    /// A new connection of its own, for blocking reads that wait up to `block`.
    pub(crate) async fn reader(
        &self,
        connect_timeout: Duration,
        command_timeout: Duration,
        block: Duration,
    ) -> Result<MultiplexedConnection, RedisError> {
        let config = config(connect_timeout, command_timeout.saturating_add(block));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

fn config(connect_timeout: Duration, response_timeout: Duration) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout))
}

/// Whether `error` means the connection cannot be used again (rather than a
/// command the server refused): its socket failed, or the server behind it is a
/// replica now, or not ready (after a failover, a new connection finds the primary).
pub(crate) fn is_connection_error(error: &RedisError) -> bool {
    matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}
