//! One connection: its consuming channel and consumer, and a channel in confirm mode
//! for the copies the source publishes (retries, dead letters).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gen_stage::BoxError;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use tracing::Instrument;

use crate::delay::{self, Declared};
use crate::error::ConnectError;
use crate::options::RabbitOptions;

/// A connection the source consumes on. Deliveries name it by `number`: an outcome
/// for a delivery of another connection is voided.
pub(crate) struct Session {
    pub(crate) number: u64,
    connection: Connection,
    channel: Channel,
    /// `None` once it ended: lapin's consumer yields its end once, then nothing
    /// for ever.
    pub(crate) consumer: tokio::sync::Mutex<Option<Consumer>>,
    /// The channel copies are published on, opened when first needed and again
    /// after a failure; held across a publish and its confirm, one copy at a time
    /// (lapin hands a returned message to whichever confirm completes next).
    publisher: tokio::sync::Mutex<Option<Channel>>,
    delays: Mutex<Declared>,
    /// Tags taken out of flight whose own outcome is still on its way: a `multiple`
    /// ack stops below them.
    sending: Mutex<BTreeSet<u64>>,
}

impl Session {
    /// Connects, declares (or checks) the queues, sets the prefetch and starts the
    /// consumer.
    pub(crate) async fn open(
        number: u64,
        uri: &AMQPUri,
        properties: &ConnectionProperties,
        tls: &OwnedTLSConfig,
        options: &RabbitOptions,
    ) -> Result<Session, ConnectError> {
        let span =
            tracing::debug_span!("rabbitmq connect", queue = %options.queue, connection = number);
        let runtime = lapin::runtime::default_runtime().map_err(ConnectError::Connect)?;
        let connection = Connection::connect_uri_with_config(
            uri.clone(),
            properties.clone(),
            tls.clone(),
            runtime,
        )
        .instrument(span)
        .await
        .map_err(ConnectError::Connect)?;
        let channel = connection
            .create_channel()
            .await
            .map_err(ConnectError::Connect)?;
        let declared = declare_queues(&channel, options).await;
        let consumed = match declared {
            Ok(()) => consume(&channel, options, number).await,
            Err(error) => Err(error),
        };
        let consumer = match consumed {
            Ok(consumer) => consumer,
            Err(error) => {
                let _ = connection.close(200, "not usable".into()).await;
                return Err(error);
            }
        };
        Ok(Session {
            number,
            connection,
            channel,
            consumer: tokio::sync::Mutex::new(Some(consumer)),
            publisher: tokio::sync::Mutex::new(None),
            delays: Mutex::new(Declared::default()),
            sending: Mutex::new(BTreeSet::new()),
        })
    }

    /// The tags whose own outcome is on its way; hold it while taking deliveries
    /// out of flight.
    pub(crate) fn lock_sending(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.sending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The outcomes of `tags` were sent (or given up).
    pub(crate) fn sent_individually(&self, tags: impl IntoIterator<Item = u64>) {
        let mut sending = self.lock_sending();
        for tag in tags {
            sending.remove(&tag);
        }
    }

    /// Whether the connection and the consuming channel are open.
    pub(crate) fn is_alive(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    pub(crate) async fn close(&self, why: &str) -> Result<(), lapin::Error> {
        if !self.connection.status().connected() {
            return Ok(());
        }
        self.connection.close(200, why.into()).await
    }

    /// Publishes `data` to `queue` through the default exchange and waits for the
    /// broker to confirm it stored it (or, for a queue that is gone, to return it).
    pub(crate) async fn publish(
        &self,
        queue: &str,
        data: &[u8],
        properties: BasicProperties,
    ) -> Result<(), BoxError> {
        let mut publisher = self.publisher.lock().await;
        let channel = self.publisher_channel(&mut publisher).await?;
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = channel
            .basic_publish("".into(), queue.into(), options, data, properties)
            .await?
            .await?;
        drop(publisher);
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(format!("no queue {queue:?} took the copy").into()),
            Confirmation::Nack(_) => {
                Err(format!("the broker did not store the copy for {queue:?}").into())
            }
            Confirmation::NotRequested => Err("the publishing channel does not confirm".into()),
        }
    }

    /// Declares the delay queue for `ms` if this connection has not lately.
    pub(crate) async fn declare_delay(&self, queue: &str, ms: u64) -> Result<(), BoxError> {
        let now = Instant::now();
        let needed = self
            .delays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .needs(ms, now);
        if !needed {
            return Ok(());
        }
        let mut publisher = self.publisher.lock().await;
        let channel = self.publisher_channel(&mut publisher).await?;
        channel
            .queue_declare(
                delay::queue_name(queue, ms).into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                delay::arguments(queue, ms),
            )
            .await?;
        self.delays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .declared(ms, now);
        Ok(())
    }

    /// The publishing channel, opened (in confirm mode) if it is not.
    async fn publisher_channel(
        &self,
        publisher: &mut Option<Channel>,
    ) -> Result<Channel, lapin::Error> {
        if let Some(channel) = publisher
            .as_ref()
            .filter(|channel| channel.status().connected())
        {
            return Ok(channel.clone());
        }
        let channel = self.connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *publisher = Some(channel.clone());
        Ok(channel)
    }

    /// Runs `calls` (each an outcome on this connection), and gives each one's
    /// result in order; those still waiting when the connection is found gone are
    /// given up as `Ok(false)`, voided: their messages went back to the queue with
    /// the connection. (lapin leaves a call made just before its channel failed
    /// waiting for ever.)
    pub(crate) async fn while_alive<F>(&self, calls: Vec<F>) -> Vec<Result<bool, BoxError>>
    where
        F: Future<Output = Result<bool, BoxError>>,
    {
        let mut results: Vec<Option<Result<bool, BoxError>>> =
            std::iter::repeat_with(|| None).take(calls.len()).collect();
        let mut pending: FuturesUnordered<_> = calls
            .into_iter()
            .enumerate()
            .map(|(index, call)| async move { (index, call.await) })
            .collect();
        let mut check = tokio::time::interval(LIVENESS_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.reset();
        loop {
            tokio::select! {
                done = pending.next() => match done {
                    Some((index, result)) => results[index] = Some(result),
                    None => break,
                },
                _ = check.tick() => {
                    if !self.is_alive() {
                        break;
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or(Ok(false)))
            .collect()
    }
}

/// How often a call waiting on the broker checks that its connection lives.
pub(crate) const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// The queue and the dead-letter queue: declared durable if missing, or (declaring
/// off) checked to exist.
async fn declare_queues(channel: &Channel, options: &RabbitOptions) -> Result<(), ConnectError> {
    let declare = |queue: String, arguments: FieldTable| async move {
        let flags = QueueDeclareOptions {
            durable: true,
            passive: !options.declare,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.as_str().into(), flags, arguments)
            .await
            .map(drop)
            .map_err(|error| ConnectError::Queue { queue, error })
    };
    declare(options.queue.clone(), options.queue_arguments.clone()).await?;
    if let Some(dead) = &options.dead_letter_queue {
        declare(dead.clone(), FieldTable::default()).await?;
    }
    Ok(())
}

/// Sets the prefetch to the budget and starts consuming.
async fn consume(
    channel: &Channel,
    options: &RabbitOptions,
    number: u64,
) -> Result<Consumer, ConnectError> {
    let failed = |error| ConnectError::Consume {
        queue: options.queue.clone(),
        error,
    };
    channel
        .basic_qos(options.prefetch(), BasicQosOptions::default())
        .await
        .map_err(failed)?;
    let tag = format!("{}-{}-{number}", options.consumer_tag, std::process::id());
    channel
        .basic_consume(
            options.queue.as_str().into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(failed)
}
