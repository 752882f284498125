//! Crash, NATS JetStream: a pipeline in a process of its own is killed with SIGKILL
//! at random points, ten times, and a new one takes over each time, on the same
//! durable consumer. Every message is processed at least once, a message processed
//! twice was delivered twice (its delivery count says so), and the stream ends empty
//! with nothing pending.

use gen_stage_conformance::{Crash, brokers};
use gen_stage_nats::async_nats::jetstream;
use gen_stage_nats::{JetStreamOptions, JetStreamSource};

const MESSAGES: u64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_ten_kills_of_their_worker_processed_at_least_once_and_doubled_only_when_redelivered()
 {
    let Some(client) = brokers::nats().await else {
        return;
    };
    let name = format!("gsc_crash_{}", std::process::id());
    // Declared here; the workers find it (declaring off), with a 2 s ack wait.
    let declared = JetStreamSource::connect_url(
        &brokers::nats_url(),
        JetStreamOptions::new(name.as_str(), "workers").ack_wait(std::time::Duration::from_secs(2)),
    )
    .await
    .expect("declared");
    drop(declared);
    let js = jetstream::new(client.clone());
    let mut acks = Vec::new();
    for n in 0..MESSAGES {
        acks.push(
            js.publish(format!("{name}.jobs"), n.to_string().into())
                .await
                .expect("published"),
        );
    }
    let mut ids = Vec::new();
    for ack in acks {
        ids.push(ack.await.expect("stored").sequence as i64);
    }
    let crash = Crash {
        worker: env!("CARGO_BIN_EXE_conformance-worker").into(),
        args: vec!["nats".into(), brokers::nats_url(), name.clone()],
        kills: 10,
    };
    let stream = js.get_stream(&name).await.expect("the stream");
    let summary = crash
        .run(&ids, || async {
            let stored = stream.get_info().await.expect("stream info").state.messages;
            let consumer = stream
                .consumer_info("workers")
                .await
                .expect("consumer info");
            stored + consumer.num_ack_pending as u64
        })
        .await;
    js.delete_stream(&name).await.expect("deleted");
    println!(
        "{} messages, {} processed more than once, each after a redelivery",
        ids.len(),
        summary.processed_twice
    );
}
