//! A consumer's own view of its subscriptions: `Context::subscriptions` lists exactly
//! the live ones, an ask on a tag that is not one of them is refused even while another
//! subscription's handshake runs, and a manual subscription asks nothing until told.

mod support;

use gen_stage::dispatcher::{Deliveries, DemandDispatcher, Dispatcher, Subscriber};
use gen_stage::error::UnknownSubscription;
use gen_stage::{
    AskMode, BoxError, CancelMode, CancelReason, Consumer, ConsumerContext, ConsumerRef,
    ExitReason, ReplyTo, SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{Recorded, Script};
use support::{barrier, n, scripted, scripted_by};

/// A tag no stage ever hands out.
fn stray() -> SubscriptionTag {
    SubscriptionTag::from_raw(u64::MAX)
}

/// What the two asks of a handshake returned: on `stray()`, then on the subscription.
type AsksInHandshake = (
    Result<(), UnknownSubscription>,
    Result<(), UnknownSubscription>,
);

/// A manual consumer that answers with its subscriptions and cancels on request; in
/// `handle_producer_subscribed` it asks on `stray()`, then on the new subscription.
#[derive(Default)]
struct Lister {
    asks_in_handshake: Recorded<AsksInHandshake>,
    /// The subscriptions `handle_cancel` saw go.
    cancelled: Recorded<SubscriptionTag>,
}

enum Cmd {
    List(ReplyTo<Vec<SubscriptionTag>>),
    Cancel(SubscriptionTag, ReplyTo<Result<(), UnknownSubscription>>),
}

impl Consumer for Lister {
    type Event = u64;
    type Message = Cmd;

    async fn handle_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        _options: &SubscribeOptions,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<AskMode, BoxError> {
        let stray = ctx.ask(stray(), n(5));
        let own = ctx.ask(tag, n(2));
        self.asks_in_handshake.push((stray, own));
        Ok(AskMode::Manual)
    }

    async fn handle_events(
        &mut self,
        _events: Vec<u64>,
        _from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        _reason: &CancelReason,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.cancelled.push(tag);
        Ok(())
    }

    async fn handle_message(
        &mut self,
        message: Cmd,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message {
            Cmd::List(reply) => {
                let mut tags = ctx.subscriptions();
                tags.sort();
                reply.send(tags);
            }
            Cmd::Cancel(tag, reply) => reply.send(ctx.cancel(tag, ExitReason::Normal)),
        }
        Ok(())
    }
}

async fn start_lister() -> (ConsumerRef<Lister>, Lister) {
    let lister = Lister::default();
    let records = Lister {
        asks_in_handshake: lister.asks_in_handshake.clone(),
        cancelled: lister.cancelled.clone(),
    };
    let started = gen_stage::consumer(lister).start().await;
    (started.expect("the consumer starts"), records)
}

async fn list(consumer: &ConsumerRef<Lister>) -> Vec<SubscriptionTag> {
    consumer.call(Cmd::List).await.expect("alive")
}

fn sorted(mut tags: Vec<SubscriptionTag>) -> Vec<SubscriptionTag> {
    tags.sort();
    tags
}

#[tokio::test]
async fn subscriptions_lists_exactly_the_live_subscriptions() {
    let (consumer, records) = start_lister().await;
    assert_eq!(list(&consumer).await, vec![]);
    let (first, _) = scripted::<u64>().await;
    let (second, _) = scripted::<u64>().await;
    let temporary = SubscribeOptions::new().cancel(CancelMode::Temporary);
    let a = consumer
        .subscribe_to(&first, temporary.clone())
        .await
        .unwrap();
    let b = consumer.subscribe_to(&second, temporary).await.unwrap();
    assert_eq!(list(&consumer).await, sorted(vec![a, b]));

    // Cancelled by the consumer itself: gone at once, and a second cancel is refused.
    let cancelled = consumer.call(|reply| Cmd::Cancel(a, reply)).await;
    assert_eq!(cancelled.unwrap(), Ok(()));
    assert_eq!(list(&consumer).await, vec![b]);
    let again = consumer.call(|reply| Cmd::Cancel(a, reply)).await;
    assert_eq!(again.unwrap(), Err(UnknownSubscription(a)));

    // Ended by the producer: gone once the consumer has handled the cancellation.
    second.cast(Script::Stop(ExitReason::Normal)).unwrap();
    records.cancelled.wait_for_len(2).await;
    assert_eq!(records.cancelled.snapshot(), vec![a, b]);
    assert_eq!(list(&consumer).await, vec![]);
}

#[tokio::test]
async fn an_ask_on_an_unknown_tag_during_a_handshake_is_refused_and_adds_no_demand() {
    let (consumer, records) = start_lister().await;
    let asks = records.asks_in_handshake;
    let (producer, record) = scripted::<u64>().await;
    let tag = consumer
        .subscribe_to(&producer, SubscribeOptions::new())
        .await
        .unwrap();
    assert_eq!(
        asks.snapshot(),
        vec![(Err(UnknownSubscription(stray())), Ok(()))]
    );
    // Only the hook's ask on its own subscription reaches the producer.
    record.wait_until(|r| !r.demands.is_empty()).await;
    barrier(&producer).await;
    assert_eq!(record.read(|r| r.demands.clone()), vec![2]);
    let pending: Vec<(SubscriptionTag, usize)> = consumer
        .demand_snapshot()
        .await
        .unwrap()
        .iter()
        .map(|demand| (demand.tag, demand.pending))
        .collect();
    assert_eq!(pending, vec![(tag, 2)]);
}

/// The default dispatcher, recording every ask it is given.
#[derive(Default)]
struct RecordingAsks {
    inner: DemandDispatcher,
    asks: Recorded<usize>,
}

impl Dispatcher<u64> for RecordingAsks {
    fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        deliveries: &mut Deliveries<u64>,
    ) -> Result<usize, BoxError> {
        self.inner.subscribe(subscriber, deliveries)
    }

    fn cancel(&mut self, tag: SubscriptionTag, deliveries: &mut Deliveries<u64>) -> usize {
        self.inner.cancel(tag, deliveries)
    }

    fn ask(
        &mut self,
        tag: SubscriptionTag,
        demand: usize,
        deliveries: &mut Deliveries<u64>,
    ) -> usize {
        self.asks.push(demand);
        self.inner.ask(tag, demand, deliveries)
    }

    fn dispatch(&mut self, events: Vec<u64>, deliveries: &mut Deliveries<u64>) -> Vec<u64> {
        self.inner.dispatch(events, deliveries)
    }
}

#[tokio::test]
async fn a_manual_subscription_sends_no_ask_until_told() {
    let dispatcher = RecordingAsks::default();
    let asks = dispatcher.asks.clone();
    let (producer, _) = scripted_by::<u64>(dispatcher).await;
    let (consumer, record, tag) =
        support::manual_consumer(&producer, SubscribeOptions::new()).await;
    support::settle(&producer, &[&consumer]).await;
    assert_eq!(asks.snapshot(), Vec::<usize>::new(), "not even an ask of 0");

    consumer.ask(tag, n(3)).unwrap();
    support::settle(&producer, &[&consumer]).await;
    assert_eq!(asks.snapshot(), vec![3]);
    assert_eq!(record.event_count(), 0);
}

/// The clock is paused: a producer that is never told makes `within` fail at once.
#[tokio::test(start_paused = true)]
async fn a_stopped_consumer_tells_each_producer_why() {
    let (consumer, _) = support::collector::<u64>().await;
    let (first, first_record) = scripted::<u64>().await;
    let (second, second_record) = scripted::<u64>().await;
    let a = consumer.subscribe_to(&first, SubscribeOptions::new()).await;
    let b = consumer
        .subscribe_to(&second, SubscribeOptions::new())
        .await;
    let (a, b) = (a.unwrap(), b.unwrap());
    let reason = ExitReason::custom_shutdown("done");
    consumer.stop(reason.clone()).await.unwrap();
    let down = CancelReason::Down(reason);
    for (tag, record) in [(a, &first_record), (b, &second_record)] {
        let seen = support::within("the producer is told", record.wait_for_cancels(1));
        assert_eq!(seen.await, vec![(tag, down.clone())]);
    }
}
