//! Names: registering stages in a `Registry`, looking them up by kind, names freed when
//! their stage stops (or is killed), and subscribing by name at start and at run time.

mod support;

use gen_stage::error::{NameTaken, StartError, SubscribeError};
use gen_stage::kind::{ConsumerKind, ProducerKind, StageKind};
use gen_stage::{
    CancelMode, CancelReason, ExitReason, Producer, ProducerRef, Registry, StageRef,
    SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{
    CollectingConsumer, Counter, ProducerRecord, Request, Script, ScriptedProducer, Watch,
};
use support::{
    Collector, Events, consumer_barrier, opts, range, stops_having_received, stops_normally, within,
};

type Scripted = ScriptedProducer<u64>;
type CollectorKind = ConsumerKind<CollectingConsumer<u64>>;

/// Starts the producer `stage` registered as `name`.
async fn named_producer<S: Producer>(registry: &Registry, name: &str, stage: S) -> ProducerRef<S> {
    let started = gen_stage::producer(stage).name(registry, name).start();
    started.await.expect("the producer starts")
}

async fn named_counter(registry: &Registry, name: &str, counter: Counter) -> ProducerRef<Counter> {
    named_producer(registry, name, counter).await
}

async fn named_scripted(
    registry: &Registry,
    name: &str,
) -> (ProducerRef<Scripted>, Watch<ProducerRecord>) {
    let (script, record) = ScriptedProducer::new();
    (named_producer(registry, name, script).await, record)
}

/// Starts a collector subscribed to `name` through the builder.
async fn start_by_name(
    registry: &Registry,
    name: &str,
    options: SubscribeOptions,
) -> Result<(Collector<u64>, Events<u64>), StartError> {
    let (collector, record) = CollectingConsumer::new();
    let builder = gen_stage::consumer(collector).subscribe_to_name(registry, name, options);
    Ok((builder.start().await?, record))
}

/// Starts a collector subscribed to `name`, which resolves, through the builder.
async fn collect_by_name(
    registry: &Registry,
    name: &str,
    options: SubscribeOptions,
) -> (Collector<u64>, Events<u64>) {
    let started = start_by_name(registry, name, options).await;
    started.expect("the name resolves")
}

/// Whether subscribing `consumer` to `name` at run time fails with `NotRegistered`.
async fn run_time_not_registered(
    consumer: &Collector<u64>,
    registry: &Registry,
    name: &str,
) -> bool {
    let subscribed = consumer
        .subscribe_to_name(registry, name, SubscribeOptions::new())
        .await;
    not_registered(&subscribed.expect_err("the name does not resolve"), name)
}

/// A collector registered as `name`, with no subscription.
async fn named_collector(registry: &Registry, name: &str) -> (Collector<u64>, Events<u64>) {
    let (collector, record) = CollectingConsumer::new();
    let started = gen_stage::consumer(collector).name(registry, name).start();
    (started.await.expect("the consumer starts"), record)
}

fn reasons(cancels: &[(SubscriptionTag, CancelReason)]) -> Vec<CancelReason> {
    cancels.iter().map(|(_, reason)| reason.clone()).collect()
}

fn not_registered(error: &SubscribeError, name: &str) -> bool {
    matches!(error, SubscribeError::NotRegistered(n) if n == name)
}

/// Whether `registry` holds no scripted producer under `name`.
fn no_scripted(registry: &Registry, name: &str) -> bool {
    registry.lookup::<ProducerKind<Scripted>>(name).is_none()
}

/// Kills `stage` and checks that it stopped with `Killed`.
async fn kill<K: StageKind>(stage: &StageRef<K>) {
    stage.kill();
    stops_killed(stage).await;
}

async fn stops_killed<K: StageKind>(stage: &StageRef<K>) {
    assert_eq!(within("stops", stage.stopped()).await, ExitReason::Killed);
    // A killed stage publishes no reason of its own; its handle still says why.
    assert_eq!(stage.exit_reason(), Some(ExitReason::Killed));
}

// --- Registering and looking up --------------------------------------------------------

#[tokio::test]
async fn lookup_finds_a_stage_only_under_its_own_kind() {
    let registry = Registry::new();
    let counter = named_counter(&registry, "numbers", Counter::new(0)).await;
    let (sink, _) = named_collector(&registry, "sink").await;

    let found = registry.lookup::<ProducerKind<Counter>>("numbers");
    assert_eq!(found.expect("registered").id(), counter.id());
    assert!(no_scripted(&registry, "numbers"));
    assert!(registry.lookup::<CollectorKind>("numbers").is_none());
    assert!(registry.lookup::<ProducerKind<Counter>>("sink").is_none());
    assert!(
        registry
            .lookup::<ProducerKind<Counter>>("missing")
            .is_none()
    );
    assert!(registry.contains("numbers") && registry.contains("sink"));
    assert!(!registry.contains("missing"));

    // Calls go through the handle found by name.
    let by_name = registry
        .lookup::<CollectorKind>("sink")
        .expect("registered");
    assert_eq!(by_name.id(), sink.id());
    by_name
        .call(Request::Ping)
        .await
        .expect("the consumer answers");
}

#[tokio::test]
async fn names_lists_the_running_stages_sorted() {
    let registry = Registry::new();
    assert!(registry.names().is_empty());
    let b = named_counter(&registry, "b", Counter::new(0)).await;
    let _c = named_collector(&registry, "c").await;
    let _a = named_scripted(&registry, "a").await;
    assert_eq!(registry.names(), ["a", "b", "c"]);

    b.stop(ExitReason::Shutdown).await.expect("alive");
    assert_eq!(registry.names(), ["a", "c"]);
}

#[tokio::test]
async fn a_name_held_by_a_running_stage_is_refused_with_name_taken() {
    let registry = Registry::new();
    let first = named_counter(&registry, "numbers", Counter::new(0)).await;

    let second = gen_stage::producer(Counter::new(100))
        .name(&registry, "numbers")
        .start()
        .await;
    let Err(StartError::NameTaken(taken)) = second else {
        panic!("the second producer got the name: {second:?}");
    };
    assert_eq!(taken, NameTaken("numbers".into()));

    // Another kind of stage is refused the name too.
    let (collector, _) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(collector).name(&registry, "numbers");
    let refused = consumer.start().await;
    assert!(matches!(refused, Err(StartError::NameTaken(NameTaken(n))) if n == "numbers"));

    // The first holder keeps it.
    let holder = registry.lookup::<ProducerKind<Counter>>("numbers");
    assert_eq!(holder.expect("still registered").id(), first.id());
    assert_eq!(registry.names(), ["numbers"]);
}

#[tokio::test]
async fn a_stopped_stage_frees_its_name_for_a_new_stage() {
    let registry = Registry::new();
    let old = named_counter(&registry, "numbers", Counter::new(0)).await;
    old.stop(ExitReason::Shutdown).await.expect("alive");

    assert!(!registry.contains("numbers"));
    assert!(
        registry
            .lookup::<ProducerKind<Counter>>("numbers")
            .is_none()
    );
    assert!(registry.names().is_empty());

    let new = named_counter(&registry, "numbers", Counter::new(0)).await;
    let found = registry.lookup::<ProducerKind<Counter>>("numbers");
    assert_eq!(found.expect("registered again").id(), new.id());
    assert_ne!(new.id(), old.id());
}

#[tokio::test]
async fn a_stage_that_stops_on_its_own_frees_its_name_whatever_the_reason() {
    let registry = Registry::new();
    // Normal: a finite counter runs out.
    let counter = named_counter(&registry, "finite", Counter::new(0).limit(3)).await;
    let (_, record) = collect_by_name(&registry, "finite", opts(5, 0)).await;
    stops_normally(&counter).await;
    assert_eq!(record.events(), range(0, 3));
    // Abnormal: a producer that fails.
    let (failing, _) = named_scripted(&registry, "failing").await;
    failing
        .cast(Script::Stop(ExitReason::error("boom")))
        .unwrap();
    assert_eq!(failing.stopped().await, ExitReason::error("boom"));

    assert!(!registry.contains("finite") && !registry.contains("failing"));
    assert!(registry.names().is_empty());
}

#[tokio::test]
async fn a_stage_that_fails_to_start_frees_its_name() {
    let registry = Registry::new();
    let (collector, _) = CollectingConsumer::<u64>::new();
    let failed = gen_stage::consumer(collector)
        .name(&registry, "sink")
        .subscribe_to_name(&registry, "nowhere", SubscribeOptions::new())
        .start()
        .await;
    assert!(matches!(failed, Err(StartError::Subscribe(ref e)) if not_registered(e, "nowhere")));
    assert!(!registry.contains("sink"));

    let (sink, _) = named_collector(&registry, "sink").await;
    let found = registry
        .lookup::<CollectorKind>("sink")
        .expect("registered");
    assert_eq!(found.id(), sink.id());
}

#[tokio::test]
async fn registries_are_independent() {
    let (left, right) = (Registry::new(), Registry::new());
    let a = named_counter(&left, "numbers", Counter::new(0)).await;
    let b = named_counter(&right, "numbers", Counter::new(0)).await;
    let in_left = left.lookup::<ProducerKind<Counter>>("numbers").unwrap();
    let in_right = right.lookup::<ProducerKind<Counter>>("numbers").unwrap();
    assert_eq!((in_left.id(), in_right.id()), (a.id(), b.id()));
}

// --- Subscribing by name ---------------------------------------------------------------

#[tokio::test]
async fn subscribe_to_name_at_start_receives_the_named_producers_events() {
    let registry = Registry::new();
    let counter = named_counter(&registry, "numbers", Counter::new(0).limit(5)).await;
    let (consumer, record) = collect_by_name(&registry, "numbers", opts(2, 0)).await;
    stops_having_received(&consumer, &record, range(0, 5)).await;
    assert!(counter.exit_reason().is_some_and(|r| r.is_normal()));
    assert_eq!(record.batch_sizes(), [2, 2, 1]);
}

#[tokio::test]
async fn the_builder_resolves_the_name_when_started_not_when_built() {
    let registry = Registry::new();
    let (collector, record) = CollectingConsumer::<u64>::new();
    let builder =
        gen_stage::consumer(collector).subscribe_to_name(&registry, "numbers", opts(3, 0));
    // Nothing holds the name yet; the producer arrives before the start.
    let (producer, producer_record) = named_scripted(&registry, "numbers").await;
    let _consumer = builder.start().await.expect("the name resolves at start");
    assert_eq!(producer_record.read(|r| r.subscriptions.len()), 1);

    producer.cast(Script::Queue(range(0, 3))).unwrap();
    within("events", record.wait_for_events(3)).await;
    assert_eq!(record.events(), range(0, 3));
}

#[tokio::test]
async fn subscribe_to_name_at_run_time_subscribes_to_the_current_holder() {
    let registry = Registry::new();
    let (first, first_record) = named_scripted(&registry, "numbers").await;
    let (consumer, record) = named_collector(&registry, "sink").await;
    let temporary = opts(10, 0).cancel(CancelMode::Temporary);

    let tag = consumer
        .subscribe_to_name(&registry, "numbers", temporary.clone())
        .await;
    let tag = tag.expect("the producer accepts");
    assert_eq!(first_record.read(|r| r.subscriptions.len()), 1);
    assert_eq!(record.read(|r| r.subscriptions.clone()), [tag]);

    // The name passes to a new producer; a new subscription by name finds it.
    first.stop(ExitReason::Shutdown).await.unwrap();
    within("the cancel", record.wait_for_cancels(1)).await;
    let (second, second_record) = named_scripted(&registry, "numbers").await;
    let again = consumer
        .subscribe_to_name(&registry, "numbers", temporary)
        .await;
    assert_ne!(again.expect("the new producer accepts"), tag);
    assert_eq!(second_record.read(|r| r.subscriptions.len()), 1);

    second.cast(Script::Queue(vec![7, 8])).unwrap();
    within("events", record.wait_for_events(2)).await;
    assert_eq!(record.events(), [7, 8]);
    assert_eq!(first_record.read(|r| r.demands.clone()), [10]);
}

#[tokio::test]
async fn an_unknown_name_fails_start_with_not_registered() {
    let registry = Registry::new();
    let failed = start_by_name(&registry, "nowhere", SubscribeOptions::new()).await;
    let Err(StartError::Subscribe(error)) = failed else {
        panic!("expected a subscription error");
    };
    assert!(not_registered(&error, "nowhere"), "got {error:?}");
}

#[tokio::test]
async fn an_unknown_name_at_run_time_is_not_registered_and_the_consumer_keeps_running() {
    let registry = Registry::new();
    let (consumer, record) = named_collector(&registry, "sink").await;
    assert!(run_time_not_registered(&consumer, &registry, "nowhere").await);

    consumer_barrier(&consumer).await;
    assert!(consumer.is_alive());
    assert!(record.read(|r| r.subscriptions.is_empty() && r.cancels.is_empty()));
}

#[tokio::test]
async fn a_name_held_by_no_producer_of_these_events_is_not_registered() {
    let registry = Registry::new();
    let _sink = named_collector(&registry, "sink").await;
    let words = gen_stage::source::from_iter(vec![String::from("a")]).name(&registry, "words");
    let _words = words.start().await.expect("the words producer starts");

    let (consumer, _) = named_collector(&registry, "other").await;
    for name in ["sink", "words"] {
        assert!(
            run_time_not_registered(&consumer, &registry, name).await,
            "{name}"
        );
    }
    let failed = start_by_name(&registry, "words", SubscribeOptions::new()).await;
    assert!(matches!(failed, Err(StartError::Subscribe(ref e)) if not_registered(e, "words")));
}

#[tokio::test]
async fn a_stopped_producers_name_no_longer_resolves() {
    let registry = Registry::new();
    let (producer, _) = named_scripted(&registry, "numbers").await;
    producer.stop(ExitReason::Shutdown).await.unwrap();
    let (consumer, _) = named_collector(&registry, "sink").await;
    assert!(run_time_not_registered(&consumer, &registry, "numbers").await);
}

// --- Killed stages ---------------------------------------------------------------------

#[tokio::test]
async fn a_killed_producer_frees_its_name_and_its_consumers_see_killed() {
    let registry = Registry::new();
    let (producer, _) = named_scripted(&registry, "numbers").await;
    let (permanent, permanent_record) = collect_by_name(&registry, "numbers", opts(5, 0)).await;
    let temporary = opts(5, 0).cancel(CancelMode::Temporary);
    let (survivor, survivor_record) = collect_by_name(&registry, "numbers", temporary).await;

    kill(&producer).await;
    assert!(!registry.contains("numbers"));
    assert!(no_scripted(&registry, "numbers"));
    assert!(registry.names().is_empty());

    stops_killed(&permanent).await;
    let cancels = permanent_record.read(|r| r.cancels.clone());
    assert_eq!(reasons(&cancels), [CancelReason::Down(ExitReason::Killed)]);
    let cancels = within("the cancel", survivor_record.wait_for_cancels(1)).await;
    assert_eq!(reasons(&cancels), [CancelReason::Down(ExitReason::Killed)]);
    consumer_barrier(&survivor).await;

    // The name no longer resolves, and a new producer can take it.
    assert!(run_time_not_registered(&survivor, &registry, "numbers").await);
    let (replacement, _) = named_scripted(&registry, "numbers").await;
    let found = registry
        .lookup::<ProducerKind<Scripted>>("numbers")
        .unwrap();
    assert_eq!(found.id(), replacement.id());
}

#[tokio::test]
async fn a_killed_consumer_frees_its_name_and_its_producer_sees_killed() {
    let registry = Registry::new();
    let (producer, producer_record) = named_scripted(&registry, "numbers").await;
    let (collector, record) = CollectingConsumer::<u64>::new();
    let consumer = gen_stage::consumer(collector)
        .name(&registry, "sink")
        .subscribe_to_name(&registry, "numbers", SubscribeOptions::new())
        .start()
        .await
        .unwrap();

    kill(&consumer).await;
    assert!(!registry.contains("sink"));
    assert_eq!(registry.names(), ["numbers"]);
    assert_eq!(
        record.terminated(),
        None,
        "a killed stage runs no terminate hook"
    );

    let cancels = producer_record.wait_for_cancels(1).await;
    assert_eq!(cancels[0].1, CancelReason::Down(ExitReason::Killed));
    assert!(producer.is_alive());
}

/// A consumer that, in `init`, subscribes by name from its context and records what
/// the call answered.
struct Follower {
    registry: Registry,
    name: &'static str,
    answered: gen_stage_test::Recorded<Result<SubscriptionTag, SubscribeError>>,
    events: gen_stage_test::Recorded<u64>,
}

impl gen_stage::Consumer for Follower {
    type Event = u64;
    type Message = ();

    async fn init(
        &mut self,
        ctx: &mut gen_stage::ConsumerContext<'_, Self>,
    ) -> Result<gen_stage::Init, gen_stage::BoxError> {
        let options = SubscribeOptions::new().cancel(CancelMode::Temporary);
        self.answered
            .push(ctx.subscribe_to_name(&self.registry, self.name, options));
        Ok(gen_stage::Init::Start)
    }

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _from: SubscriptionTag,
        _ctx: &mut gen_stage::ConsumerContext<'_, Self>,
    ) -> Result<(), gen_stage::BoxError> {
        for event in events {
            self.events.push(event);
        }
        Ok(())
    }
}

async fn follower(
    registry: &Registry,
    name: &'static str,
) -> (
    gen_stage_test::Recorded<Result<SubscriptionTag, SubscribeError>>,
    gen_stage_test::Recorded<u64>,
) {
    let answered = gen_stage_test::Recorded::default();
    let events = gen_stage_test::Recorded::default();
    let follower = Follower {
        registry: registry.clone(),
        name,
        answered: answered.clone(),
        events: events.clone(),
    };
    let _started = gen_stage::consumer(follower).start().await.expect("starts");
    (answered, events)
}

#[tokio::test]
async fn a_hook_subscribes_by_name_through_its_context() {
    let registry = Registry::new();
    let (producer, _) = named_scripted(&registry, "source").await;
    let (answered, events) = follower(&registry, "source").await;
    assert!(answered.snapshot()[0].is_ok(), "{:?}", answered.snapshot());
    producer.cast(Script::Emit(range(0, 3))).expect("alive");
    within("the events", events.wait_for_len(3)).await;
    assert_eq!(events.snapshot(), range(0, 3));
}

#[tokio::test]
async fn a_hook_subscribing_to_an_unknown_name_is_told_at_once() {
    let registry = Registry::new();
    let (answered, _) = follower(&registry, "nobody").await;
    let answered = answered.snapshot();
    assert!(
        matches!(&answered[..], [Err(SubscribeError::NotRegistered(name))] if name == "nobody"),
        "{answered:?}"
    );
}
