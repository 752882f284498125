//! The demo's jobs in a Redis stream of their own, read through gen-stage-redis.

use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::PipelineBuilder;
use gen_stage_redis::redis::aio::MultiplexedConnection;
use gen_stage_redis::redis::{self, AsyncCommands, Value};
use gen_stage_redis::{RedisOptions, RedisSource};

use crate::broker_servers::redis_url as url;

use super::payload::{decode_message, encode};
use super::work::{Job, Work};

/// How often the demo looks whether every job is settled.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// The field each entry carries its job in.
const JOB: &str = "job";

/// A stream made for this run, and a connection to fill and delete it.
pub(crate) struct RedisStream {
    source: RedisSource,
    connection: MultiplexedConnection,
    stream: String,
    jobs: u64,
}

impl RedisStream {
    /// Makes the stream and its group, and adds `jobs`.
    pub(crate) async fn new(jobs: Vec<Job>) -> Result<RedisStream, BoxError> {
        let unreachable = |error: &dyn std::fmt::Display| {
            format!("Redis at {} (GEN_STAGE_REDIS_URL): {error}", url())
        };
        let mut connection = async {
            redis::Client::open(url())?
                .get_multiplexed_async_connection()
                .await
        }
        .await
        .map_err(|error| unreachable(&error))?;
        let stream = format!("gen_stage_demo_{}", std::process::id());
        let options = RedisOptions::new(stream.as_str(), "demo", "demo-0");
        let source = RedisSource::connect(url().as_str(), options)
            .await
            .map_err(|error| unreachable(&error))?;
        for chunk in jobs.chunks(1000) {
            let mut pipe = redis::pipe();
            for job in chunk {
                pipe.xadd(&stream, "*", &[(JOB, &encode(job)[..])]).ignore();
            }
            pipe.query_async::<()>(&mut connection).await?;
        }
        Ok(RedisStream {
            source,
            connection,
            stream,
            jobs: jobs.len() as u64,
        })
    }

    pub(crate) fn feed(&self, builder: PipelineBuilder<Work>) -> PipelineBuilder<Work> {
        let source = self.source.clone();
        builder
            .producer_with(
                move || source.producer(),
                |message| {
                    decode_message(message, |entry| match entry.map.get(JOB) {
                        Some(Value::BulkString(bytes)) => bytes.as_slice(),
                        _ => &[],
                    })
                },
            )
            .source_health(self.source.clone())
    }

    /// Completes once every job is settled for good: acked, or dead-lettered (a
    /// retried job is acked or dead-lettered later, once).
    pub(crate) async fn settled(&self) {
        loop {
            let state = self.source.state();
            if state.acked + state.dead_lettered >= self.jobs {
                return;
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    pub(crate) fn leftovers(&self) -> (usize, u64) {
        let state = self.source.state();
        (state.in_flight, state.voided)
    }

    pub(crate) async fn finish(mut self, keep: bool) -> Result<Option<String>, BoxError> {
        // What the consumer still holds becomes claimable; its name is let go.
        self.source.close().await?;
        let name = &self.stream;
        if keep {
            return Ok(Some(format!(
                "Redis stream {name} (group demo; dead letters in {name}:dead, retries waiting in {name}:delayed; delete them when done)"
            )));
        }
        let keys: Vec<String> = self.connection.keys(format!("{name}*")).await?;
        if !keys.is_empty() {
            let _: u64 = self.connection.del(keys).await?;
        }
        Ok(None)
    }
}
