//! Where the demo's jobs wait: an in-memory queue (the default), or a real broker
//! (cargo features of this crate).

use std::future::Future;
use std::pin::Pin;

use gen_stage::BoxError;
use gen_stage_pipeline::{MemoryQueue, PipelineBuilder};

use super::work::{Job, Work};

/// Which queue the demo runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SourceKind {
    /// An in-memory queue: nothing to set up.
    #[default]
    Memory,
    /// A PostgreSQL table (at GEN_STAGE_POSTGRES_URL), through gen-stage-postgres.
    #[cfg(feature = "postgres")]
    Postgres,
    /// A NATS JetStream stream (at GEN_STAGE_NATS_URL), through gen-stage-nats.
    #[cfg(feature = "nats")]
    Nats,
    /// A RabbitMQ queue (at GEN_STAGE_AMQP_URL), through gen-stage-rabbitmq.
    #[cfg(feature = "rabbitmq")]
    Rabbitmq,
    /// A Redis stream (at GEN_STAGE_REDIS_URL), through gen-stage-redis.
    #[cfg(feature = "redis")]
    Redis,
}

/// The queue the demo's jobs wait in.
pub(crate) enum Source {
    Memory(MemoryQueue<Job>),
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::PgSource),
    #[cfg(feature = "nats")]
    Nats(super::nats::NatsSource),
    #[cfg(feature = "rabbitmq")]
    // Boxed: a connection and a channel of the client, larger than the others.
    Rabbitmq(Box<super::rabbitmq::RabbitQueue>),
    #[cfg(feature = "redis")]
    Redis(super::redis::RedisStream),
}

impl Source {
    /// A queue of `kind` holding `jobs`.
    pub(crate) async fn new(kind: SourceKind, jobs: Vec<Job>) -> Result<Source, BoxError> {
        match kind {
            SourceKind::Memory => {
                let queue = MemoryQueue::new();
                queue.extend(jobs);
                Ok(Source::Memory(queue))
            }
            #[cfg(feature = "postgres")]
            SourceKind::Postgres => Ok(Source::Postgres(
                super::postgres::PgSource::new(jobs).await?,
            )),
            #[cfg(feature = "nats")]
            SourceKind::Nats => Ok(Source::Nats(super::nats::NatsSource::new(jobs).await?)),
            #[cfg(feature = "rabbitmq")]
            SourceKind::Rabbitmq => Ok(Source::Rabbitmq(Box::new(
                super::rabbitmq::RabbitQueue::new(jobs).await?,
            ))),
            #[cfg(feature = "redis")]
            SourceKind::Redis => Ok(Source::Redis(super::redis::RedisStream::new(jobs).await?)),
        }
    }

    /// The pipeline's producer of the queue's jobs.
    pub(crate) fn feed(&self, builder: PipelineBuilder<Work>) -> PipelineBuilder<Work> {
        match self {
            Source::Memory(queue) => {
                let queue = queue.clone();
                builder.producer(move || queue.producer())
            }
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => source.feed(builder),
            #[cfg(feature = "nats")]
            Source::Nats(source) => source.feed(builder),
            #[cfg(feature = "rabbitmq")]
            Source::Rabbitmq(source) => source.feed(builder),
            #[cfg(feature = "redis")]
            Source::Redis(source) => source.feed(builder),
        }
    }

    /// Completes once every job is settled for good (acked, or dead-lettered).
    pub(crate) fn settled(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        match self {
            Source::Memory(queue) => Box::pin(queue.settled()),
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => Box::pin(source.settled()),
            #[cfg(feature = "nats")]
            Source::Nats(source) => Box::pin(source.settled()),
            #[cfg(feature = "rabbitmq")]
            Source::Rabbitmq(source) => Box::pin(source.settled()),
            #[cfg(feature = "redis")]
            Source::Redis(source) => Box::pin(source.settled()),
        }
    }

    /// Jobs the queue still counts in flight, and outcomes it could not apply.
    pub(crate) fn leftovers(&self) -> (usize, u64) {
        match self {
            Source::Memory(queue) => (queue.in_flight(), queue.stray_outcomes()),
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => source.leftovers(),
            #[cfg(feature = "nats")]
            Source::Nats(source) => source.leftovers(),
            #[cfg(feature = "rabbitmq")]
            Source::Rabbitmq(source) => source.leftovers(),
            #[cfg(feature = "redis")]
            Source::Redis(source) => source.leftovers(),
        }
    }

    /// Ends the run on the broker: its connections closed and what it made removed,
    /// or kept (`keep`); gives the name of what was kept.
    pub(crate) async fn finish(self, keep: bool) -> Result<Option<String>, BoxError> {
        match self {
            // Nothing outside the process to keep.
            Source::Memory(_) => {
                let _ = keep;
                Ok(None)
            }
            #[cfg(feature = "postgres")]
            Source::Postgres(source) => source.finish(keep).await,
            #[cfg(feature = "nats")]
            Source::Nats(source) => source.finish(keep).await,
            #[cfg(feature = "rabbitmq")]
            Source::Rabbitmq(source) => source.finish(keep).await,
            #[cfg(feature = "redis")]
            Source::Redis(source) => source.finish(keep).await,
        }
    }
}
