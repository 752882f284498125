//! Scale-out, on each broker: three pipelines in processes of their own share one
//! table, stream or queue. The messages are published once all three say they are
//! ready; every message is processed, none twice within one delivery, each worker
//! handles at least a tenth, and the broker ends with nothing left.

use gen_stage_conformance::{ScaleOut, brokers};
use gen_stage_nats::async_nats::jetstream;
use gen_stage_nats::{JetStreamOptions, JetStreamSource};
use gen_stage_postgres::{QueueTable, enqueue_batch, migrate};
use gen_stage_rabbitmq::{RabbitOptions, RabbitSource};
use gen_stage_redis::{RedisOptions, RedisSource};

const MESSAGES: usize = 3000;

fn scale_out(broker: &str, url: String, name: &str) -> ScaleOut {
    ScaleOut {
        worker: env!("CARGO_BIN_EXE_conformance-worker").into(),
        args: vec![broker.into(), url, name.to_owned()],
        instances: 3,
    }
}

fn report(broker: &str, summary: &gen_stage_conformance::ScaleOutSummary) {
    println!(
        "{broker}: {MESSAGES} messages shared {:?}, {} processed twice",
        summary.per_instance, summary.processed_twice
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_postgres_table() {
    let Some(db) = brokers::postgres().await else {
        return;
    };
    let table = QueueTable::new(format!("gsc_scale_{}", std::process::id())).expect("a name");
    migrate(&db, &table).await.expect("declared");
    let count = format!("SELECT count(*) FROM \"{}\"", table.name());
    let summary = scale_out("postgres", brokers::postgres_url(), table.name())
        .run(
            || async {
                let payloads: Vec<Vec<u8>> =
                    (0..MESSAGES).map(|n| n.to_string().into_bytes()).collect();
                enqueue_batch(&db, &table, &payloads)
                    .await
                    .expect("enqueued")
            },
            || async {
                let left: i64 = db.query_one(&count, &[]).await.expect("counted").get(0);
                left as u64
            },
        )
        .await;
    db.batch_execute(&format!(
        "DROP TABLE \"{0}\"; DROP TABLE \"{0}_dead\";",
        table.name()
    ))
    .await
    .expect("dropped");
    report("postgres", &summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_jetstream_consumer() {
    let Some(client) = brokers::nats().await else {
        return;
    };
    let name = format!("gsc_scale_{}", std::process::id());
    // Declared here; the workers find it (declaring off).
    let options = JetStreamOptions::new(name.as_str(), "workers")
        .ack_wait(std::time::Duration::from_secs(2))
        .max_ack_pending(10_000);
    drop(
        JetStreamSource::connect_url(&brokers::nats_url(), options)
            .await
            .expect("declared"),
    );
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(&name).await.expect("the stream");
    let summary = scale_out("nats", brokers::nats_url(), &name)
        .run(
            || async {
                let mut stored = Vec::new();
                for n in 0..MESSAGES {
                    stored.push(
                        js.publish(format!("{name}.jobs"), n.to_string().into())
                            .await
                            .expect("published"),
                    );
                }
                let mut ids = Vec::new();
                for ack in stored {
                    ids.push(ack.await.expect("stored").sequence as i64);
                }
                ids
            },
            || async {
                let stored = stream.get_info().await.expect("info").state.messages;
                let consumer = stream.consumer_info("workers").await.expect("consumer");
                stored + consumer.num_ack_pending as u64
            },
        )
        .await;
    js.delete_stream(&name).await.expect("deleted");
    report("nats", &summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_rabbitmq_queue() {
    let Some(connection) = brokers::rabbitmq().await else {
        return;
    };
    let name = format!("gsc_scale_{}", std::process::id());
    let _guard = brokers::RabbitQueues::with_dead_letters(&name);
    // Declared here; the workers find it (declaring off).
    RabbitSource::connect(&brokers::amqp_url(), RabbitOptions::new(name.as_str()))
        .await
        .expect("declared")
        .close()
        .await
        .expect("closed");
    let summary = scale_out("rabbitmq", brokers::amqp_url(), &name)
        .run(
            || async {
                brokers::rabbitmq_publish(&connection, &name, 0..MESSAGES as u64).await;
                (0..MESSAGES as i64).collect()
            },
            || async {
                let (ready, unacked) = brokers::rabbitmq_counts(&name).await.expect("the queue");
                ready + unacked
            },
        )
        .await;
    report("rabbitmq", &summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_a_redis_consumer_group() {
    let Some(redis) = brokers::redis().await else {
        return;
    };
    let name = format!("gsc_scale_{}", std::process::id());
    let _guard = brokers::RedisKeys(name.clone());
    // Declared here; the workers find it (declaring off).
    RedisSource::connect(
        brokers::redis_url().as_str(),
        RedisOptions::new(name.as_str(), "workers", "declaring"),
    )
    .await
    .expect("declared")
    .close()
    .await
    .expect("closed");
    let summary = scale_out("redis", brokers::redis_url(), &name)
        .run(
            || {
                let mut redis = redis.clone();
                let name = name.clone();
                async move {
                    brokers::redis_add(&mut redis, &name, 0..MESSAGES as u64).await;
                    (0..MESSAGES as i64).collect()
                }
            },
            || {
                let mut redis = redis.clone();
                let name = name.clone();
                async move { brokers::redis_left(&mut redis, &name).await }
            },
        )
        .await;
    report("redis", &summary);
}
