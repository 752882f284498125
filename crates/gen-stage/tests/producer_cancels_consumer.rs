//! A producer cancels one of its consumers: at once (no event goes to it any more,
//! the others are served) or once what it had emitted before has gone out (a drain).
//! The consumer hears of it after the events already sent to it, its cancel mode
//! decides whether it stops, and the producer's `handle_cancel` runs.

mod support;

use std::num::NonZeroUsize;

use gen_stage::error::UnknownSubscription;
use gen_stage::{
    BoxError, CancelMode, CancelReason, ExitReason, Producer, ProducerContext, ProducerRef,
    ReplyTo, SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{CollectingConsumer, Recorded};
use support::within;

enum Command {
    Send(Vec<u32>),
    Cancel {
        tag: SubscriptionTag,
        after_buffered: bool,
        reply: ReplyTo<Result<(), UnknownSubscription>>,
    },
    Consumers(ReplyTo<Vec<SubscriptionTag>>),
}

/// Emits what it is sent; lists and cancels consumers on request; records
/// `handle_cancel`.
struct Relay {
    cancels: Recorded<(SubscriptionTag, CancelReason)>,
}

impl Producer for Relay {
    type Event = u32;
    type Message = Command;

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<u32>, BoxError> {
        Ok(Vec::new())
    }

    async fn handle_message(
        &mut self,
        command: Command,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match command {
            Command::Send(events) => ctx.emit(events),
            Command::Cancel {
                tag,
                after_buffered,
                reply,
            } => {
                let reason = ExitReason::Shutdown;
                reply.send(if after_buffered {
                    ctx.cancel_consumer_after_buffered(tag, reason)
                } else {
                    ctx.cancel_consumer(tag, reason)
                });
            }
            Command::Consumers(reply) => {
                let mut consumers = ctx.consumers();
                consumers.sort_unstable();
                reply.send(consumers);
            }
        }
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        reason: &CancelReason,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.cancels.push((tag, reason.clone()));
        Ok(())
    }
}

async fn relay() -> (
    ProducerRef<Relay>,
    Recorded<(SubscriptionTag, CancelReason)>,
) {
    let cancels = Recorded::default();
    let relay = Relay {
        cancels: cancels.clone(),
    };
    let stage = gen_stage::producer(relay).start().await.expect("starts");
    (stage, cancels)
}

async fn cancel(
    relay: &ProducerRef<Relay>,
    tag: SubscriptionTag,
    after_buffered: bool,
) -> Result<(), UnknownSubscription> {
    relay
        .call(|reply| Command::Cancel {
            tag,
            after_buffered,
            reply,
        })
        .await
        .expect("the relay answers")
}

/// The relay's consumers, as its hooks see them, in tag order.
async fn consumers(relay: &ProducerRef<Relay>) -> Vec<SubscriptionTag> {
    relay
        .call(Command::Consumers)
        .await
        .expect("the relay answers")
}

fn temporary() -> SubscribeOptions {
    SubscribeOptions::new().cancel(CancelMode::Temporary)
}

#[tokio::test]
async fn a_producer_cancels_one_consumer_at_once_and_serves_the_others() {
    let (relay, cancels) = relay().await;
    let (first, first_record) = CollectingConsumer::<u32>::new();
    let first = gen_stage::consumer(first).start().await.expect("starts");
    let (second, second_record) = CollectingConsumer::<u32>::new();
    let second = gen_stage::consumer(second).start().await.expect("starts");
    let first_tag = first
        .subscribe_to(&relay, temporary())
        .await
        .expect("subscribes");
    let second_tag = second
        .subscribe_to(&relay, temporary())
        .await
        .expect("subscribes");
    let mut both = vec![first_tag, second_tag];
    both.sort_unstable();
    assert_eq!(consumers(&relay).await, both);

    cancel(&relay, first_tag, false)
        .await
        .expect("a consumer of the relay");
    within("the relay's handle_cancel", cancels.wait_for_len(1)).await;
    assert_eq!(
        cancels.snapshot(),
        [(first_tag, CancelReason::Cancelled(ExitReason::Shutdown))]
    );
    let told = within("the consumer hears", first_record.wait_for_cancels(1)).await;
    assert_eq!(
        told,
        [(first_tag, CancelReason::Cancelled(ExitReason::Shutdown))]
    );

    // Everything sent from now on goes to the other consumer.
    relay.cast(Command::Send(vec![1, 2, 3, 4])).expect("runs");
    within(
        "the other consumer's events",
        second_record.wait_for_events(4),
    )
    .await;
    assert_eq!(first_record.event_count(), 0);
    assert_eq!(consumers(&relay).await, [second_tag]);
    assert!(
        first.is_alive(),
        "a temporary subscription's end stops nothing"
    );
}

#[tokio::test]
async fn a_cancel_after_buffered_lets_the_consumer_take_what_was_emitted_before() {
    let (relay, cancels) = relay().await;
    let (consumer, record) = CollectingConsumer::<u32>::new();
    let consumer = gen_stage::consumer(consumer.manual())
        .start()
        .await
        .expect("starts");
    let tag = consumer
        .subscribe_to(&relay, temporary())
        .await
        .expect("subscribes");

    // No demand yet: the events wait in the relay's buffer, and so does the cancel.
    relay.cast(Command::Send(vec![1, 2, 3])).expect("runs");
    cancel(&relay, tag, true)
        .await
        .expect("a consumer of the relay");
    relay.cast(Command::Send(vec![4])).expect("runs");
    assert_eq!(relay.estimate_buffered_count().await.expect("answers"), 4);
    assert!(cancels.is_empty(), "cancelled before its events went out");

    consumer
        .ask(tag, NonZeroUsize::new(10).expect("not zero"))
        .expect("runs");
    let told = within("the cancellation", record.wait_for_cancels(1)).await;
    assert_eq!(told, [(tag, CancelReason::Cancelled(ExitReason::Shutdown))]);
    // What was emitted before the cancel reached the consumer before it. (What was
    // emitted after it may go out in the same dispatch, as with an info message.)
    let events = record.events();
    assert_eq!(events[..3], [1, 2, 3], "{events:?}");
    within("the relay's handle_cancel", cancels.wait_for_len(1)).await;
}

#[tokio::test]
async fn a_permanent_consumer_cancelled_by_its_producer_stops_with_the_reason() {
    let (relay, _cancels) = relay().await;
    let (consumer, _record) = CollectingConsumer::<u32>::new();
    let consumer = gen_stage::consumer(consumer).start().await.expect("starts");
    let tag = consumer
        .subscribe_to(&relay, SubscribeOptions::new())
        .await
        .expect("subscribes");
    cancel(&relay, tag, false)
        .await
        .expect("a consumer of the relay");
    let reason = within("the consumer stops", consumer.stopped()).await;
    assert_eq!(reason, ExitReason::Shutdown);
    assert!(relay.is_alive());
}

#[tokio::test]
async fn cancelling_an_unknown_consumer_is_an_error() {
    let (other, _) = relay().await;
    let (relay, cancels) = relay().await;
    let (consumer, _record) = CollectingConsumer::<u32>::new();
    let consumer = gen_stage::consumer(consumer).start().await.expect("starts");
    // A subscription of the consumer, to another producer.
    let elsewhere = consumer
        .subscribe_to(&other, temporary())
        .await
        .expect("subscribes");
    for after_buffered in [false, true] {
        assert_eq!(
            cancel(&relay, elsewhere, after_buffered).await,
            Err(UnknownSubscription(elsewhere))
        );
    }
    assert!(cancels.is_empty());
}
