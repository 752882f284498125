//! Crash, Redis Streams: a pipeline in a process of its own is killed with SIGKILL
//! at random points, ten times, and a new one (another consumer of the group) takes
//! over each time. The dead workers' pending entries are claimed once their lease
//! runs out. Every entry is processed at least once, an entry processed twice was
//! delivered twice (the group's delivery count says so), and the group ends with
//! nothing pending or unread.

use gen_stage_conformance::{Crash, brokers};
use gen_stage_redis::{RedisOptions, RedisSource};

const MESSAGES: u64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_ten_kills_of_their_worker_processed_at_least_once_and_doubled_only_when_redelivered()
 {
    let Some(mut redis) = brokers::redis().await else {
        return;
    };
    let name = format!("gsc_crash_{}", std::process::id());
    let _guard = brokers::RedisKeys(name.clone());
    // Declared here; the workers find it (declaring off).
    let declared = RedisSource::connect(
        brokers::redis_url().as_str(),
        RedisOptions::new(name.as_str(), "workers", "declaring"),
    )
    .await
    .expect("declared");
    declared.close().await.expect("closed");
    brokers::redis_add(&mut redis, &name, 0..MESSAGES).await;
    let ids: Vec<i64> = (0..MESSAGES as i64).collect();
    let crash = Crash {
        worker: env!("CARGO_BIN_EXE_conformance-worker").into(),
        args: vec!["redis".into(), brokers::redis_url(), name.clone()],
        kills: 10,
    };
    let summary = crash
        .run(&ids, || {
            let mut redis = redis.clone();
            let name = name.clone();
            async move { brokers::redis_left(&mut redis, &name).await }
        })
        .await;
    println!(
        "{} messages, {} processed more than once, each after a redelivery",
        ids.len(),
        summary.processed_twice
    );
}
