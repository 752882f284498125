//! Edges of the lifecycle a review found: calls at a killed stage, a subscription a
//! stopping producer took from its mailbox, drains that meet new subscriptions or no
//! consumer, timers that are always due, and pipelines that hold their own handles.

use std::time::Duration;

use futures::FutureExt;
use gen_stage::error::CallError;
use gen_stage::kind::ProducerKind;
use gen_stage::{
    BoxError, Consumer, ConsumerContext, ExitReason, Producer, ProducerContext, ReplyTo,
    SubscribeOptions, SubscriptionTag, WeakStageRef,
};

/// A consumer that keeps the reply handle of every call, to reply later (never).
#[derive(Default)]
struct Keeper {
    held: Vec<ReplyTo<u32>>,
}

impl Consumer for Keeper {
    type Event = u64;
    type Message = ReplyTo<u32>;

    async fn handle_events(
        &mut self,
        _: Vec<u64>,
        _: SubscriptionTag,
        _: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_message(
        &mut self,
        reply: ReplyTo<u32>,
        _: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.held.push(reply);
        Ok(())
    }
}

/// A killed stage drops the reply handles it held on its own task, while its
/// lifecycle has no stopping reason: `defer_reply` parks them in the lifecycle's
/// requests, which nothing ever drains again. The caller waits its whole timeout.
#[tokio::test(start_paused = true)]
async fn a_call_held_by_a_killed_stage_fails_at_once() {
    let stage = gen_stage::consumer(Keeper::default())
        .start()
        .await
        .unwrap();
    let caller = tokio::spawn({
        let stage = stage.clone();
        async move {
            stage
                .call_timeout(|reply| reply, Duration::from_secs(3600))
                .await
        }
    });
    // Let the stage take the call and keep its handle.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let start = tokio::time::Instant::now();
    stage.kill();
    assert_eq!(stage.stopped().await, ExitReason::Killed);
    let outcome = caller.await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the caller waited {:?} for a killed stage ({outcome:?})",
        start.elapsed()
    );
    assert!(matches!(
        outcome,
        Err(CallError::NotAlive | CallError::Stopped(_))
    ));
}

/// A consumer whose `handle_message` never returns: what is queued behind it stays queued.
struct Stuck;

impl Consumer for Stuck {
    type Event = u64;
    type Message = Option<ReplyTo<u32>>;

    async fn handle_events(
        &mut self,
        _: Vec<u64>,
        _: SubscriptionTag,
        _: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_message(
        &mut self,
        _: Option<ReplyTo<u32>>,
        _: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// Same, for a call still queued in the mailbox of a stage that is killed (the
/// supervisor's last resort, `stop_within`'s last step): the Mailbox's drop runs on
/// the stage's task and defers the reply handle for ever.
#[tokio::test(start_paused = true)]
async fn a_call_queued_at_a_killed_stage_fails_at_once() {
    let stage = gen_stage::consumer(Stuck).start().await.unwrap();
    stage.cast(None).unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let caller = tokio::spawn({
        let stage = stage.clone();
        async move { stage.call_timeout(Some, Duration::from_secs(3600)).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let start = tokio::time::Instant::now();
    stage.kill();
    assert_eq!(stage.stopped().await, ExitReason::Killed);
    let outcome = caller.await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the caller waited {:?} for a killed stage ({outcome:?})",
        start.elapsed()
    );
}

/// A producer that never produces.
struct Idle;

impl Producer for Idle {
    type Event = u64;
    type Message = ();

    async fn handle_demand(
        &mut self,
        _: usize,
        _: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        Ok(Vec::new())
    }
}

/// A consumer that, on a message, asks its producer to stop (without waiting). It
/// keeps the producer's handle as a weak one, which does not keep the pipeline running.
struct Stopper {
    producer: WeakStageRef<ProducerKind<Idle>>,
}

impl Consumer for Stopper {
    type Event = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        _: Vec<u64>,
        _: SubscriptionTag,
        _: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_message(
        &mut self,
        (): (),
        _: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        // Sends the stop request and its wake envelope, right behind the subscription
        // this stage has just sent the producer.
        if let Some(producer) = self.producer.upgrade() {
            let _ = producer.stop(ExitReason::Shutdown).now_or_never();
        }
        Ok(())
    }
}

/// The loop takes a `Subscribe` out of the mailbox, then sees the stop request and
/// drops the envelope: the subscriber is never told (the Mailbox's drop refuses only
/// what is still queued). A permanent subscription to a producer that stopped must
/// stop the consumer; it runs on, subscribed to nothing.
#[tokio::test(start_paused = true)]
async fn a_subscription_taken_from_the_mailbox_by_a_stopping_producer_is_refused() {
    let producer = gen_stage::producer(Idle).start().await.unwrap();
    let consumer = gen_stage::consumer(Stopper {
        producer: producer.downgrade(),
    })
    .start()
    .await
    .unwrap();
    // The producer waits for mail.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // Queued together: the consumer handles the subscription request (sending
    // `Subscribe` to the producer), then the message (stopping the producer).
    consumer
        .async_subscribe_to(&producer, SubscribeOptions::new())
        .unwrap();
    consumer.cast(()).unwrap();
    assert_eq!(producer.stopped().await, ExitReason::Shutdown);
    let outcome = tokio::time::timeout(Duration::from_secs(60), consumer.stopped()).await;
    assert!(
        outcome.is_ok(),
        "a permanent consumer whose producer stopped runs on (producers: {})",
        consumer.stats().producers
    );
}

/// An endless producer.
struct Endless;

impl Producer for Endless {
    type Event = u64;
    type Message = ();

    async fn handle_demand(
        &mut self,
        demand: usize,
        _: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        Ok(vec![0; demand])
    }
}

/// Takes a millisecond per batch.
struct Sleepy;

impl Consumer for Sleepy {
    type Event = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        _: Vec<u64>,
        _: SubscriptionTag,
        _: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    }
}

/// A drain overtakes the mailbox, but a subscription request queued before it is
/// handled after `begin_drain`: that subscription is open (not closing), so the
/// consumer keeps consuming from it until the drain's deadline.
#[tokio::test(start_paused = true)]
async fn a_subscription_queued_before_a_drain_is_drained_too() {
    let producer = gen_stage::producer(Endless).start().await.unwrap();
    let consumer = gen_stage::consumer(Sleepy).start().await.unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    consumer
        .async_subscribe_to(&producer, SubscribeOptions::new().max_demand(10))
        .unwrap();
    let start = tokio::time::Instant::now();
    let reason = consumer
        .drain_and_stop(ExitReason::Normal, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(reason, ExitReason::Normal);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the drain ran to its deadline ({:?}), consuming {} events",
        start.elapsed(),
        consumer.stats().events_received
    );
}

enum Tick {
    Tick,
    Ping(ReplyTo<()>),
}

/// A 1 ms periodic timer whose handling takes 2 ms: a timer is always due when the
/// loop looks, and due timers are taken ahead of mail (biased select).
struct Ticker;

impl Consumer for Ticker {
    type Event = u64;
    type Message = Tick;

    async fn init(
        &mut self,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<gen_stage::Init, BoxError> {
        let _ = ctx.send_after(Duration::from_millis(1), Tick::Tick);
        Ok(gen_stage::Init::Start)
    }

    async fn handle_events(
        &mut self,
        _: Vec<u64>,
        _: SubscriptionTag,
        _: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_message(
        &mut self,
        tick: Tick,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match tick {
            Tick::Tick => {
                let _ = ctx.send_after(Duration::from_millis(1), Tick::Tick);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Tick::Ping(reply) => reply.send(()),
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_timer_that_is_always_due_does_not_starve_the_mailbox() {
    let stage = gen_stage::consumer(Ticker).start().await.unwrap();
    // Ticking.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let answered = stage.call_timeout(Tick::Ping, Duration::from_secs(5)).await;
    assert_eq!(answered, Ok(()));
}

/// Passes events through.
struct Pass;

impl gen_stage::ProducerConsumer for Pass {
    type Input = u64;
    type Output = u64;
    type Message = ();

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _: SubscriptionTag,
        _: &mut gen_stage::ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<u64>, BoxError> {
        Ok(events)
    }
}

/// A producer-consumer with no consumer holds its input in `pending` (no downstream
/// demand): `drained()` requires `pending` empty, which can never happen without a
/// consumer, so the drain runs to its deadline although "no consumer is left".
#[tokio::test(start_paused = true)]
async fn a_producer_consumer_without_consumers_drains_at_once() {
    let producer = gen_stage::producer(Endless).start().await.unwrap();
    let middle = gen_stage::producer_consumer(Pass)
        .subscribe_to(&producer, SubscribeOptions::new().max_demand(10))
        .start()
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let start = tokio::time::Instant::now();
    let reason = middle
        .drain_and_stop(ExitReason::Normal, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(reason, ExitReason::Normal);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the drain ran to its deadline ({:?})",
        start.elapsed()
    );
}

/// A consumer that keeps its producer's handle in its state (to call it, say), as a
/// weak handle: once user code has dropped every handle, the pair stops.
#[tokio::test(start_paused = true)]
async fn a_pipeline_that_holds_its_own_handles_is_still_collected() {
    let before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let producer = gen_stage::producer(Idle).start().await.unwrap();
    let consumer = gen_stage::consumer(Stopper {
        producer: producer.downgrade(),
    })
    .subscribe_to(&producer, SubscribeOptions::new())
    .start()
    .await
    .unwrap();
    drop((producer, consumer));
    // Plenty of turns for the checks to travel (the paused clock never moves here).
    for _ in 0..10_000 {
        if tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            == before
        {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the unreachable pipeline runs on");
}
