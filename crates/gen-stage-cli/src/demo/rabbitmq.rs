//! The demo's jobs in a RabbitMQ queue of their own, consumed through
//! gen-stage-rabbitmq.

use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_pipeline::PipelineBuilder;
use gen_stage_rabbitmq::lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions,
};
use gen_stage_rabbitmq::lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use gen_stage_rabbitmq::{RabbitOptions, RabbitSource};

use crate::broker_servers::amqp_url as url;

use super::payload::{decode_message, encode};
use super::work::{Job, Work};

/// How often the demo looks whether every job is settled.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A queue made for this run, and a channel to fill and delete it.
pub(crate) struct RabbitQueue {
    source: RabbitSource,
    connection: Connection,
    channel: Channel,
    queue: String,
    jobs: u64,
}

impl RabbitQueue {
    /// Makes the queue and publishes `jobs`, waiting for the broker to confirm each.
    pub(crate) async fn new(jobs: Vec<Job>) -> Result<RabbitQueue, BoxError> {
        let unreachable = |error: &dyn std::fmt::Display| {
            format!("RabbitMQ at {} (GEN_STAGE_AMQP_URL): {error}", url())
        };
        let connection = Connection::connect(&url(), ConnectionProperties::default())
            .await
            .map_err(|error| unreachable(&error))?;
        let queue = format!("gen_stage_demo_{}", std::process::id());
        let source = RabbitSource::connect(&url(), RabbitOptions::new(queue.as_str()))
            .await
            .map_err(|error| unreachable(&error))?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let count = jobs.len() as u64;
        for (chunk_start, chunk) in jobs.chunks(1000).enumerate() {
            let mut confirms = Vec::with_capacity(chunk.len());
            for (offset, job) in chunk.iter().enumerate() {
                let id = (chunk_start * 1000 + offset).to_string();
                let properties = BasicProperties::default()
                    .with_message_id(id.into())
                    .with_delivery_mode(2);
                confirms.push(
                    channel
                        .basic_publish(
                            "".into(),
                            queue.as_str().into(),
                            BasicPublishOptions::default(),
                            &encode(job),
                            properties,
                        )
                        .await?,
                );
            }
            for confirm in confirms {
                confirm.await?;
            }
        }
        Ok(RabbitQueue {
            source,
            connection,
            channel,
            queue,
            jobs: count,
        })
    }

    pub(crate) fn feed(&self, builder: PipelineBuilder<Work>) -> PipelineBuilder<Work> {
        let source = self.source.clone();
        builder
            .producer_with(
                move || source.producer(),
                |message| decode_message(message, |data| data.data()),
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

    pub(crate) async fn finish(self, keep: bool) -> Result<Option<String>, BoxError> {
        // The broker takes back what it pushed ahead and the pipeline never took.
        self.source.close().await?;
        if keep {
            self.connection.close(200, "demo done".into()).await?;
            let name = &self.queue;
            return Ok(Some(format!(
                "RabbitMQ queues {name} and {name}.dead (delete them when done)"
            )));
        }
        for queue in [self.queue.clone(), format!("{}.dead", self.queue)] {
            self.channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        self.connection.close(200, "demo done".into()).await?;
        Ok(None)
    }
}
