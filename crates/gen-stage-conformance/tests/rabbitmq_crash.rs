//! Crash, RabbitMQ: a pipeline in a process of its own is killed with SIGKILL at
//! random points, ten times, and a new one takes over each time, on the same queue.
//! Every message is processed at least once, a message processed twice was
//! delivered twice (the quorum queue's delivery count says so), and the queue ends
//! empty with nothing unacked.

use gen_stage_conformance::{Crash, brokers};
use gen_stage_rabbitmq::lapin::types::{AMQPValue, FieldTable};
use gen_stage_rabbitmq::{RabbitOptions, RabbitSource};

const MESSAGES: u64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_ten_kills_of_their_worker_processed_at_least_once_and_doubled_only_when_redelivered()
 {
    let Some(connection) = brokers::rabbitmq().await else {
        return;
    };
    let name = format!("gsc_crash_{}", std::process::id());
    let _guard = brokers::RabbitQueues::with_dead_letters(&name);
    // A quorum queue: its delivery count tells each redelivery from the last (a
    // classic queue's redelivered flag says only that there was one). Declared
    // here; the workers find it (declaring off).
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let declared = RabbitSource::connect(
        &brokers::amqp_url(),
        RabbitOptions::new(name.as_str()).queue_arguments(quorum),
    )
    .await
    .expect("declared");
    declared.close().await.expect("closed");
    brokers::rabbitmq_publish(&connection, &name, 0..MESSAGES).await;
    // A quorum queue's counts reach `rabbitmqctl` a moment late: all of them first.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while brokers::rabbitmq_counts(&name).await != Some((MESSAGES, 0)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the messages are not counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ids: Vec<i64> = (0..MESSAGES as i64).collect();
    let crash = Crash {
        worker: env!("CARGO_BIN_EXE_conformance-worker").into(),
        args: vec!["rabbitmq".into(), brokers::amqp_url(), name.clone()],
        kills: 10,
    };
    let summary = crash
        .run(&ids, || async {
            let (ready, unacked) = brokers::rabbitmq_counts(&name).await.expect("the queue");
            ready + unacked
        })
        .await;
    println!(
        "{} messages, {} processed more than once, each after a redelivery",
        ids.len(),
        summary.processed_twice
    );
}
