//! Where the connector rows and the demo's `--source` find their brokers.

/// PostgreSQL: `GEN_STAGE_POSTGRES_URL`, or the loopback default.
#[cfg(feature = "postgres")]
pub(crate) fn postgres_url() -> String {
    std::env::var("GEN_STAGE_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// NATS: `GEN_STAGE_NATS_URL`, or the loopback default.
#[cfg(feature = "nats")]
pub(crate) fn nats_url() -> String {
    std::env::var("GEN_STAGE_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// RabbitMQ: `GEN_STAGE_AMQP_URL`, or the loopback default (the broker's guest user).
#[cfg(feature = "rabbitmq")]
pub(crate) fn amqp_url() -> String {
    std::env::var("GEN_STAGE_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Redis: `GEN_STAGE_REDIS_URL`, or the loopback default.
#[cfg(feature = "redis")]
pub(crate) fn redis_url() -> String {
    std::env::var("GEN_STAGE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}
