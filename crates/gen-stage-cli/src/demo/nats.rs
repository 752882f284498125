//! The demo's jobs in a JetStream stream of their own, consumed through
//! gen-stage-nats.

use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_nats::async_nats::{self, Client, jetstream};
use gen_stage_nats::{JetStreamOptions, JetStreamSource};
use gen_stage_pipeline::PipelineBuilder;

use crate::broker_servers::nats_url as url;

use super::payload::{decode_message, encode};
use super::work::{Job, Work};

/// How often the demo looks whether the stream is empty.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A stream made for this run, and a client to watch and delete it.
pub(crate) struct NatsSource {
    source: JetStreamSource,
    client: Client,
    stream: String,
}

impl NatsSource {
    /// Makes the stream and publishes `jobs`, waiting for the server to store each.
    pub(crate) async fn new(jobs: Vec<Job>) -> Result<NatsSource, BoxError> {
        let client = async_nats::connect(url().as_str())
            .await
            .map_err(|error| format!("NATS at {} (GEN_STAGE_NATS_URL): {error}", url()))?;
        let stream = format!("gen_stage_demo_{}", std::process::id());
        let options = JetStreamOptions::new(stream.as_str(), "demo")
            .dead_letter_subject(format!("{stream}_dead_letters"));
        let source = JetStreamSource::connect_url(&url(), options).await?;
        let js = jetstream::new(client.clone());
        let subject = format!("{stream}.jobs");
        for chunk in jobs.chunks(1000) {
            let mut stored = Vec::with_capacity(chunk.len());
            for job in chunk {
                let payload = encode(job).to_vec();
                stored.push(js.publish(subject.clone(), payload.into()).await?);
            }
            for ack in stored {
                ack.await?;
            }
        }
        Ok(NatsSource {
            source,
            client,
            stream,
        })
    }

    pub(crate) fn feed(&self, builder: PipelineBuilder<Work>) -> PipelineBuilder<Work> {
        let source = self.source.clone();
        builder
            .producer_with(
                move || source.producer(),
                |message| decode_message(message, |data| &data.payload),
            )
            .source_health(self.source.clone())
    }

    /// Completes once the stream is empty: every job acked (or dead-lettered).
    pub(crate) async fn settled(&self) {
        let js = jetstream::new(self.client.clone());
        loop {
            if let Ok(stream) = js.get_stream(&self.stream).await {
                if stream
                    .get_info()
                    .await
                    .is_ok_and(|info| info.state.messages == 0)
                {
                    return;
                }
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    pub(crate) fn leftovers(&self) -> (usize, u64) {
        let state = self.source.state();
        (state.in_flight, state.voided)
    }

    pub(crate) async fn finish(self, keep: bool) -> Result<Option<String>, BoxError> {
        self.source.flush(Duration::from_secs(10)).await?;
        if keep {
            let name = &self.stream;
            return Ok(Some(format!(
                "JetStream streams {name} and {name}_dead (delete them when done)"
            )));
        }
        let js = jetstream::new(self.client.clone());
        js.delete_stream(&self.stream).await?;
        js.delete_stream(format!("{}_dead", self.stream)).await?;
        Ok(None)
    }
}
