//! `connector_redis`: drain N entries preloaded in a fresh stream (the preload is not
//! timed) through a pipeline with trivial work and acks, against the loop redis-rs's
//! documentation recommends, written by hand: `XREADGROUP ... COUNT` a batch at a
//! time on a multiplexed connection, each batch acked with one `XACK` of all its ids,
//! sent together with the next read, so the next batch is on its way while the last
//! is acked. Both sides wait for the server's answer to every `XACK` (the
//! confirmation level Redis has), and the stream ends with nothing pending or unread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gen_stage::BoxError;
use gen_stage_redis::redis::aio::MultiplexedConnection;
use gen_stage_redis::redis::streams::{StreamReadOptions, StreamReadReply};
use gen_stage_redis::redis::{self, AsyncCommands, AsyncConnectionConfig};
use gen_stage_redis::{RedisOptions, RedisSource};
use tokio::time::Instant;

use super::connector_count::drain_through;
use crate::broker_servers;

/// Entries per batch on both sides: the processors ask for this many at once.
const BATCH: usize = 100;
/// Read and not acked, at most, on the pipeline's side.
const IN_FLIGHT: usize = 1000;
/// The consumer group both sides read as.
const GROUP: &str = "bench";

/// Whether the server answers.
pub(crate) async fn reachable() -> Result<(), BoxError> {
    let mut connection = connect().await?;
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await?;
    Ok(())
}

/// A connection whose reads may wait at the server for up to a second.
async fn connect() -> Result<MultiplexedConnection, BoxError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    Ok(redis::Client::open(broker_servers::redis_url())?
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

/// A fresh stream of `messages` entries with the group `bench` at its start.
async fn preloaded(messages: u64) -> Result<(MultiplexedConnection, String), BoxError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut connection = connect().await?;
    let name = format!(
        "gsb_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&name)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(&mut connection)
        .await?;
    let mut added = 0;
    while added < messages {
        let mut pipe = redis::pipe();
        for n in added..messages.min(added + 1000) {
            pipe.xadd(&name, "*", &[("n", n)]).ignore();
        }
        pipe.query_async::<()>(&mut connection).await?;
        added = messages.min(added + 1000);
    }
    Ok((connection, name))
}

/// Nothing is pending or unread; the stream and its keys are deleted.
async fn all_acked(mut connection: MultiplexedConnection, name: &str) -> Result<(), BoxError> {
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(name)
        .arg(GROUP)
        .query_async(&mut connection)
        .await?;
    let groups: redis::streams::StreamInfoGroupsReply = connection.xinfo_groups(name).await?;
    let keys: Vec<String> = connection.keys(format!("{name}*")).await?;
    let _: u64 = connection.del(keys).await?;
    let pending = match pending {
        redis::Value::Array(summary) => summary
            .into_iter()
            .next()
            .and_then(|count| redis::from_redis_value::<u64>(count).ok())
            .unwrap_or(0),
        _ => 0,
    };
    let lag = groups.groups.first().and_then(|group| group.lag);
    if pending > 0 || lag != Some(0) {
        return Err(format!("not every entry acked: {pending} pending, lag {lag:?}").into());
    }
    Ok(())
}

/// The pipeline: a `RedisSource` producer, two processors asking `BATCH` at a time.
pub(crate) async fn gen_stage(messages: u64) -> Result<Duration, BoxError> {
    let (connection, name) = preloaded(messages).await?;
    let start = Instant::now();
    let options = RedisOptions::new(name.as_str(), GROUP, "gen-stage")
        .max_in_flight(IN_FLIGHT)
        .block(Duration::from_secs(1))
        .dead_letter_stream(None::<String>);
    let source = RedisSource::connect(broker_servers::redis_url().as_str(), options).await?;
    let producing = source.clone();
    let report = drain_through(messages, BATCH, move || producing.producer()).await?;
    source.close().await?;
    let elapsed = start.elapsed();
    if report.settled.acked != messages || report.ack_failures.total() > 0 {
        return Err(format!("the pipeline did not ack every entry: {report:?}").into());
    }
    all_acked(connection, &name).await?;
    Ok(elapsed)
}

/// One batch: up to `BATCH` new entries, waiting up to a second for the first.
async fn read_batch(
    mut connection: MultiplexedConnection,
    name: &str,
) -> Result<StreamReadReply, BoxError> {
    let options = StreamReadOptions::default()
        .group(GROUP, "hand-written")
        .count(BATCH)
        .block(1000);
    let reply: Option<StreamReadReply> =
        connection.xread_options(&[name], &[">"], &options).await?;
    Ok(reply.unwrap_or_default())
}

/// The hand-written loop of the client's documentation, acking a batch at a time
/// while the next is read.
pub(crate) async fn baseline(messages: u64) -> Result<Duration, BoxError> {
    let (connection, name) = preloaded(messages).await?;
    let start = Instant::now();
    let reading = connect().await?;
    let stream = name.as_str();
    let mut batch = read_batch(reading.clone(), stream).await?;
    let mut handled = 0;
    loop {
        let ids: Vec<String> = batch
            .keys
            .into_iter()
            .flat_map(|key| key.ids)
            .map(|entry| {
                std::hint::black_box(&entry.map);
                entry.id
            })
            .collect();
        handled += ids.len() as u64;
        let mut acking = reading.clone();
        let ack = async move {
            if ids.is_empty() {
                return Ok(0);
            }
            acking.xack::<_, _, _, u64>(stream, GROUP, &ids).await
        };
        if handled >= messages {
            ack.await?;
            break;
        }
        let (next, acked) = tokio::join!(read_batch(reading.clone(), stream), ack);
        acked?;
        batch = next?;
    }
    let elapsed = start.elapsed();
    all_acked(connection, &name).await?;
    Ok(elapsed)
}
