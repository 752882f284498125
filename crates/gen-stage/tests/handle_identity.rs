//! Handles and ids as values: equal when they name the same stage, printable.

use std::collections::HashSet;

use gen_stage::{ProducerRef, StageId};
use gen_stage_test::Counter;

async fn counter() -> ProducerRef<Counter> {
    gen_stage::producer(Counter::new(0))
        .start()
        .await
        .expect("starts")
}

#[tokio::test]
async fn handles_are_equal_when_they_name_the_same_stage() {
    let (a, b) = (counter().await, counter().await);
    assert_eq!(a, a.clone());
    assert_ne!(a, b);
    let ids: HashSet<StageId> = [&a, &a.clone(), &b].map(|stage| stage.id()).into();
    assert_eq!(ids.len(), 2);
}

#[tokio::test]
async fn task_ids_print_like_stage_ids() {
    use gen_stage::BoxError;
    use gen_stage::supervision::ConsumerSupervisor;
    let supervisor = gen_stage::consumer(ConsumerSupervisor::new(|_: u64| async {
        std::future::pending::<()>().await;
        Ok::<(), BoxError>(())
    }))
    .start()
    .await
    .unwrap();
    let task = supervisor.start_child(7).await.unwrap();
    let printed = task.to_string();
    assert!(
        printed.starts_with("task#") && printed[5..].parse::<u64>().is_ok(),
        "{printed}"
    );
}
