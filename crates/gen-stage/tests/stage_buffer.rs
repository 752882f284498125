//! The producer buffer: events without demand are kept (FIFO, bounded, keep first or
//! last, discards reported), drained before `handle_demand`, and info messages queued
//! behind buffered events wait for them, also across accumulate mode (semantics §7.1,
//! §7.3, §10 items 5, 6, 7).

mod support;

use gen_stage::builder::{BufferKeep, DEFAULT_BUFFER_SIZE};
use gen_stage::{
    BoxError, DemandMode, Producer, ProducerContext, ProducerRef, ReplyTo, SubscribeOptions,
    SubscriptionTag,
};
use gen_stage_test::Relay;
use gen_stage_test::{ProducerRecord, Recorded, Script, ScriptedProducer, Watch};
use support::{Collector, Events, collect, manual_consumer, n, scripted, settle};

fn chars(text: &str) -> Vec<char> {
    text.chars().collect()
}

/// A started `ScriptedProducer` whose buffer keeps at most `size` events (and `keep` if
/// given, else the default).
async fn bounded<T: Send + 'static>(
    size: usize,
    keep: Option<BufferKeep>,
) -> (ProducerRef<ScriptedProducer<T>>, Watch<ProducerRecord>) {
    let (script, record) = ScriptedProducer::new();
    let mut builder = gen_stage::producer(script).buffer_size(size);
    if let Some(keep) = keep {
        builder = builder.buffer_keep(keep);
    }
    (builder.start().await.expect("starts"), record)
}

/// Overflows a buffer of 5 that keeps `keep` with "abcde" then "fgh" (checking that 5
/// are kept and 3 reported discarded), then drains it with two manual asks of 4.
/// Returns the batches delivered.
async fn overflow_five_then_drain(keep: BufferKeep) -> Vec<Vec<char>> {
    let (producer, record) = bounded::<char>(5, Some(keep)).await;
    producer.cast(Script::Emit(chars("abcde"))).expect("alive");
    producer.cast(Script::Emit(chars("fgh"))).expect("alive");
    assert_eq!(producer.estimate_buffered_count().await.expect("alive"), 5);
    assert_eq!(record.read(|r| r.discards.clone()), vec![3]);

    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(4)).expect("alive");
    events.wait_for_events(4).await;
    consumer.ask(tag, n(4)).expect("alive");
    events.wait_for_events(5).await;
    events.batches()
}

/// A producer that emits on command and records the info messages it handles.
struct Noting {
    notes: Recorded<&'static str>,
}

enum Cmd {
    /// Emit these events now (beyond demand they are buffered).
    Emit(Vec<char>),
    /// Sent as an info: recorded when handled.
    Note(&'static str),
    /// A round trip through the mailbox.
    Ping(ReplyTo<()>),
}

impl Producer for Noting {
    type Event = char;
    type Message = Cmd;

    async fn handle_demand(
        &mut self,
        _demand: usize,
        _ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<Vec<char>, BoxError> {
        Ok(Vec::new())
    }

    async fn handle_message(
        &mut self,
        message: Cmd,
        ctx: &mut ProducerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match message {
            Cmd::Emit(events) => ctx.emit(events),
            Cmd::Note(note) => self.notes.push(note),
            Cmd::Ping(reply) => reply.send(()),
        }
        Ok(())
    }
}

/// A started `Noting` producer (with a buffer of `size` keeping `keep` if given), and
/// the notes it records.
async fn noting(
    buffer: Option<(usize, BufferKeep)>,
) -> (ProducerRef<Noting>, Recorded<&'static str>) {
    let notes = Recorded::default();
    let mut builder = gen_stage::producer(Noting {
        notes: notes.clone(),
    });
    if let Some((size, keep)) = buffer {
        builder = builder.buffer_size(size).buffer_keep(keep);
    }
    (builder.start().await.expect("starts"), notes)
}

// --- Buffering without consumers, and draining before handle_demand -----------------

#[tokio::test]
async fn events_emitted_without_consumers_are_delivered_in_fifo_order() {
    let (producer, record) = scripted::<char>().await;
    producer.cast(Script::Emit(chars("abc"))).unwrap();
    producer.cast(Script::Emit(chars("de"))).unwrap();
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 5);

    let (_, events) = collect(&producer, SubscribeOptions::new().max_demand(10)).await;
    events.wait_for_events(5).await;
    assert_eq!(events.events(), chars("abcde"));
    // The buffer served 5 of the first 10 asked; only the rest reached handle_demand
    // (the consumer's later top-ups follow it).
    record.wait_until(|r| !r.demands.is_empty()).await;
    assert_eq!(record.read(|r| r.demands[0]), 5);
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
}

#[tokio::test]
async fn demand_covered_by_the_buffer_never_reaches_handle_demand() {
    let (producer, record) = scripted::<u32>().await;
    producer.cast(Script::Emit((0..10).collect())).unwrap();
    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;

    consumer.ask(tag, n(3)).unwrap();
    events.wait_for_events(3).await;
    // The ask has been handled once its events arrived; a call orders after it.
    assert_eq!(producer.call(Script::Owed).await.unwrap(), 0);
    assert!(record.read(|r| r.demands.is_empty()));
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 7);

    consumer.ask(tag, n(10)).unwrap();
    events.wait_for_events(10).await;
    assert_eq!(producer.call(Script::Owed).await.unwrap(), 3);
    assert_eq!(record.read(|r| r.demands.clone()), vec![3]);
    assert_eq!(events.events(), (0..10).collect::<Vec<_>>());
}

#[tokio::test]
async fn events_emitted_beyond_demand_are_buffered_and_served_first() {
    let (producer, record) = scripted::<u32>().await;
    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(2)).unwrap();
    record.wait_until(|r| r.demands == vec![2]).await;

    producer.cast(Script::Emit(vec![1, 2, 3, 4, 5])).unwrap();
    events.wait_for_events(2).await;
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 3);

    consumer.ask(tag, n(3)).unwrap();
    events.wait_for_events(5).await;
    assert_eq!(events.batches(), vec![vec![1, 2], vec![3, 4, 5]]);
    producer.call(Script::Owed).await.unwrap();
    assert_eq!(record.read(|r| r.demands.clone()), vec![2]);
}

#[tokio::test]
async fn estimate_buffered_count_follows_the_buffer() {
    let (producer, _record) = scripted::<u32>().await;
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
    producer.cast(Script::Emit((0..6).collect())).unwrap();
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 6);

    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(4)).unwrap();
    events.wait_for_events(4).await;
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 2);
}

// --- Bounded buffers: which events are kept, and discards ----------------------------

#[tokio::test]
async fn keep_first_discards_the_new_events_that_do_not_fit() {
    assert_eq!(
        overflow_five_then_drain(BufferKeep::First).await,
        vec![chars("abcd"), chars("e")]
    );
}

#[tokio::test]
async fn keep_last_discards_the_oldest_events() {
    assert_eq!(
        overflow_five_then_drain(BufferKeep::Last).await,
        vec![chars("defg"), chars("h")]
    );
}

#[tokio::test]
async fn keep_last_is_the_default() {
    let (producer, record) = bounded::<char>(2, None).await;
    producer.cast(Script::Emit(chars("abcd"))).unwrap();
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 2);
    assert_eq!(record.read(|r| r.discards.clone()), vec![2]);
    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(5)).unwrap();
    events.wait_for_events(2).await;
    assert_eq!(events.events(), chars("cd"));
}

#[tokio::test]
async fn every_overflow_is_reported_to_handle_discarded() {
    let (producer, record) = bounded::<u32>(2, None).await;
    producer.cast(Script::Emit(vec![1, 2, 3])).unwrap();
    producer.cast(Script::Emit(vec![4])).unwrap();
    producer.cast(Script::Emit(vec![5])).unwrap();
    producer.cast(Script::Emit(vec![6, 7, 8, 9])).unwrap();
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 2);
    assert_eq!(record.read(|r| r.discards.clone()), vec![1, 1, 1, 4]);
    assert_eq!(record.read(|r| r.discards.iter().sum::<usize>()), 7);
}

#[tokio::test]
async fn buffer_size_zero_keeps_nothing_and_reports_every_discard() {
    for keep in [BufferKeep::First, BufferKeep::Last] {
        let (producer, record) = bounded::<u32>(0, Some(keep)).await;
        producer.cast(Script::Emit(vec![1, 2, 3])).unwrap();
        assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
        assert_eq!(record.read(|r| r.discards.clone()), vec![3], "{keep:?}");

        // With demand, events still go out; only what exceeds it is discarded.
        let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
        consumer.ask(tag, n(2)).unwrap();
        record.wait_until(|r| r.demands == vec![2]).await;
        producer.cast(Script::Emit(vec![4, 5, 6])).unwrap();
        events.wait_for_events(2).await;
        assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
        assert_eq!(events.events(), vec![4, 5], "{keep:?}");
        assert_eq!(record.read(|r| r.discards.clone()), vec![3, 1], "{keep:?}");
    }
}

#[tokio::test]
async fn the_default_producer_buffer_holds_ten_thousand_events() {
    assert_eq!(DEFAULT_BUFFER_SIZE, 10_000);
    let (producer, record) = scripted::<u32>().await;
    producer.cast(Script::Emit((0..10_005).collect())).unwrap();
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 10_000);
    assert_eq!(record.read(|r| r.discards.clone()), vec![5]);

    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(2)).unwrap();
    events.wait_for_events(2).await;
    assert_eq!(events.events(), vec![5, 6], "the oldest five were dropped");
}

#[tokio::test]
async fn producer_consumer_buffers_are_unbounded_by_default() {
    let relay = Relay::<u32>::pass_through();
    let discards = relay.discards();
    let stage = gen_stage::producer_consumer(relay).start().await.unwrap();
    stage.cast((0..20_000).collect()).unwrap();
    stage.cast((0..5).collect()).unwrap();
    assert_eq!(stage.estimate_buffered_count().await.unwrap(), 20_005);
    assert!(discards.is_empty());
}

#[tokio::test]
async fn a_bounded_producer_consumer_buffer_discards_and_reports() {
    let relay = Relay::<u32>::pass_through();
    let discards = relay.discards();
    let stage = gen_stage::producer_consumer(relay)
        .buffer_size(3)
        .start()
        .await
        .unwrap();
    stage.cast((0..5).collect()).unwrap();
    assert_eq!(stage.estimate_buffered_count().await.unwrap(), 3);
    assert_eq!(discards.snapshot(), vec![2]);

    let (consumer, events, tag) = manual_consumer(&stage, SubscribeOptions::new()).await;
    consumer.ask(tag, n(10)).unwrap();
    events.wait_for_events(3).await;
    assert_eq!(events.events(), vec![2, 3, 4]);
}

// --- The buffer and accumulate mode ---------------------------------------------------

#[tokio::test]
async fn buffered_events_go_out_before_those_emitted_while_accumulating() {
    let (producer, record) = scripted::<u32>().await;
    // No consumer yet: buffered.
    producer.cast(Script::Emit(vec![1, 2, 3, 4, 5])).unwrap();
    producer.set_demand_mode(DemandMode::Accumulate).unwrap();
    producer.cast(Script::Emit(vec![6, 7])).unwrap();
    let (consumer, events) = collect(&producer, SubscribeOptions::new().max_demand(10)).await;
    settle(&producer, &[&consumer]).await;
    assert_eq!(
        events.event_count(),
        0,
        "nothing goes out while accumulating"
    );

    producer.set_demand_mode(DemandMode::Forward).unwrap();
    events.wait_for_events(7).await;
    assert_eq!(events.events(), vec![1, 2, 3, 4, 5, 6, 7]);
    settle(&producer, &[&consumer]).await;
    // Of the 10 asked, the buffer served 5: handle_demand is asked for the other 5 (as
    // in GenStage, events emitted while accumulating do not lower it), then for the 5
    // the consumer asks again after its first batch.
    assert_eq!(record.read(|r| r.demands.clone()), vec![5, 5]);
}

#[tokio::test]
async fn keep_last_while_accumulating_keeps_the_newest_events() {
    let (producer, record) = bounded::<u32>(3, None).await;
    producer.cast(Script::Emit(vec![1, 2, 3])).unwrap();
    producer.set_demand_mode(DemandMode::Accumulate).unwrap();
    // The buffer is full: the oldest buffered events make room.
    producer.cast(Script::Emit(vec![4, 5])).unwrap();
    let (consumer, events) = collect(&producer, SubscribeOptions::new().max_demand(10)).await;
    producer.set_demand_mode(DemandMode::Forward).unwrap();
    events.wait_for_events(3).await;
    settle(&producer, &[&consumer]).await;
    assert_eq!(events.events(), vec![3, 4, 5]);
    assert_eq!(record.read(|r| r.discards.clone()), vec![2]);
}

// --- Info messages behind buffered events --------------------------------------------

#[tokio::test]
async fn an_info_with_nothing_buffered_is_handled_at_once() {
    let (producer, notes) = noting(None).await;
    producer.sync_info(Cmd::Note("sync")).await.unwrap();
    notes.wait_for_len(1).await;
    producer.async_info(Cmd::Note("async")).unwrap();
    notes.wait_for_len(2).await;
    assert_eq!(notes.snapshot(), vec!["sync", "async"]);
}

#[tokio::test]
async fn sync_info_waits_for_the_events_buffered_before_it() {
    let (producer, notes) = noting(None).await;
    producer.cast(Cmd::Emit(chars("abc"))).unwrap();
    producer.sync_info(Cmd::Note("after c")).await.unwrap();
    producer.call(Cmd::Ping).await.unwrap();
    assert!(notes.is_empty(), "three events are still buffered");
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 3);

    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(2)).unwrap();
    events.wait_for_events(2).await;
    producer.call(Cmd::Ping).await.unwrap();
    assert!(notes.is_empty(), "'c' is still buffered");

    consumer.ask(tag, n(1)).unwrap();
    events.wait_for_events(3).await;
    producer.call(Cmd::Ping).await.unwrap();
    assert_eq!(notes.snapshot(), vec!["after c"]);
    assert_eq!(events.events(), chars("abc"));
}

#[tokio::test]
async fn several_infos_keep_their_order_among_buffered_events() {
    let (producer, notes) = noting(None).await;
    producer.cast(Cmd::Emit(chars("ab"))).unwrap();
    producer.sync_info(Cmd::Note("one")).await.unwrap();
    producer.async_info(Cmd::Note("two")).unwrap();
    producer.cast(Cmd::Emit(chars("c"))).unwrap();
    producer.async_info(Cmd::Note("three")).unwrap();
    producer.sync_info(Cmd::Note("four")).await.unwrap();
    producer.call(Cmd::Ping).await.unwrap();
    assert!(notes.is_empty());

    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(1)).unwrap();
    events.wait_for_events(1).await;
    producer.call(Cmd::Ping).await.unwrap();
    assert!(notes.is_empty());

    consumer.ask(tag, n(1)).unwrap();
    events.wait_for_events(2).await;
    producer.call(Cmd::Ping).await.unwrap();
    assert_eq!(notes.snapshot(), vec!["one", "two"]);

    consumer.ask(tag, n(5)).unwrap();
    events.wait_for_events(3).await;
    producer.call(Cmd::Ping).await.unwrap();
    assert_eq!(notes.snapshot(), vec!["one", "two", "three", "four"]);
    assert_eq!(events.events(), chars("abc"));
}

#[tokio::test]
async fn a_large_demand_releases_every_info_in_order() {
    let (producer, notes) = noting(None).await;
    producer.cast(Cmd::Emit(chars("ab"))).unwrap();
    producer.async_info(Cmd::Note("after b")).unwrap();
    producer.cast(Cmd::Emit(chars("cd"))).unwrap();
    producer.async_info(Cmd::Note("after d")).unwrap();

    let (_, events) = collect(&producer, SubscribeOptions::new().max_demand(10)).await;
    events.wait_for_events(4).await;
    notes.wait_for_len(2).await;
    assert_eq!(notes.snapshot(), vec!["after b", "after d"]);
    assert_eq!(events.events(), chars("abcd"));
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 0);
}

#[tokio::test]
async fn an_info_behind_events_dropped_by_keep_last_is_released_at_discard_time() {
    let (producer, notes) = noting(Some((2, BufferKeep::Last))).await;
    producer.cast(Cmd::Emit(chars("a"))).unwrap();
    producer.async_info(Cmd::Note("after a")).unwrap();
    producer.cast(Cmd::Emit(chars("b"))).unwrap();
    producer.async_info(Cmd::Note("after b")).unwrap();
    producer.call(Cmd::Ping).await.unwrap();
    assert!(notes.is_empty());

    // 'c' pushes 'a' out: the info that waited for 'a' is due, the one after 'b' is not.
    producer.cast(Cmd::Emit(chars("c"))).unwrap();
    producer.call(Cmd::Ping).await.unwrap();
    assert_eq!(notes.snapshot(), vec!["after a"]);

    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(5)).unwrap();
    events.wait_for_events(2).await;
    notes.wait_for_len(2).await;
    assert_eq!(notes.snapshot(), vec!["after a", "after b"]);
    assert_eq!(events.events(), chars("bc"));
}

#[tokio::test]
async fn an_info_behind_events_kept_by_keep_first_still_waits() {
    let (producer, notes) = noting(Some((2, BufferKeep::First))).await;
    producer.cast(Cmd::Emit(chars("a"))).unwrap();
    producer.async_info(Cmd::Note("after a")).unwrap();
    // 'c' and 'd' do not fit and are dropped; 'a' stays, so the info keeps waiting.
    producer.cast(Cmd::Emit(chars("bcd"))).unwrap();
    producer.call(Cmd::Ping).await.unwrap();
    assert!(notes.is_empty());
    assert_eq!(producer.estimate_buffered_count().await.unwrap(), 2);

    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    consumer.ask(tag, n(1)).unwrap();
    events.wait_for_events(1).await;
    notes.wait_for_len(1).await;
    assert_eq!(events.events(), chars("a"));
    consumer.ask(tag, n(5)).unwrap();
    events.wait_for_events(2).await;
    assert_eq!(events.events(), chars("ab"));
}

// --- Info messages queued after an overflow ------------------------------------------

/// Asks `tag` for one event at a time until `count` have arrived, then returns once the
/// producer has handled whatever those asks released.
async fn drain_one_by_one(
    producer: &ProducerRef<Noting>,
    (consumer, events, tag): (&Collector<char>, &Events<char>, SubscriptionTag),
    count: usize,
) {
    for received in events.event_count() + 1..=count {
        consumer.ask(tag, n(1)).expect("alive");
        events.wait_for_events(received).await;
    }
    producer.call(Cmd::Ping).await.expect("alive");
}

#[tokio::test]
async fn an_info_after_a_keep_first_overflow_is_handled_right_after_the_last_kept_event() {
    let (producer, notes) = noting(Some((3, BufferKeep::First))).await;
    // 'd' and 'e' do not fit: the info follows 'c'.
    producer.cast(Cmd::Emit(chars("abcde"))).unwrap();
    producer.sync_info(Cmd::Note("after c")).await.unwrap();
    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    drain_one_by_one(&producer, (&consumer, &events, tag), 2).await;
    assert!(notes.is_empty(), "'c' is still buffered");

    producer.cast(Cmd::Emit(chars("f"))).unwrap();
    drain_one_by_one(&producer, (&consumer, &events, tag), 3).await;
    assert_eq!(notes.snapshot(), vec!["after c"]);
    assert_eq!(
        producer.estimate_buffered_count().await.unwrap(),
        1,
        "'f' waits"
    );
    drain_one_by_one(&producer, (&consumer, &events, tag), 4).await;
    assert_eq!(events.events(), chars("abcf"));
}

#[tokio::test]
async fn an_info_after_a_keep_last_eviction_is_handled_right_after_the_newest_event() {
    let (producer, notes) = noting(Some((3, BufferKeep::Last))).await;
    // 'a' and 'b' make room; the info follows 'e'.
    producer.cast(Cmd::Emit(chars("abcde"))).unwrap();
    producer.async_info(Cmd::Note("after e")).unwrap();
    // 'f' evicts 'c': the info still waits for 'd' and 'e'.
    producer.cast(Cmd::Emit(chars("f"))).unwrap();
    producer.call(Cmd::Ping).await.unwrap();
    let (consumer, events, tag) = manual_consumer(&producer, SubscribeOptions::new()).await;
    drain_one_by_one(&producer, (&consumer, &events, tag), 1).await;
    assert!(notes.is_empty(), "'e' is still buffered");

    drain_one_by_one(&producer, (&consumer, &events, tag), 2).await;
    assert_eq!(notes.snapshot(), vec!["after e"]);
    assert_eq!(
        producer.estimate_buffered_count().await.unwrap(),
        1,
        "'f' waits"
    );
    drain_one_by_one(&producer, (&consumer, &events, tag), 3).await;
    assert_eq!(events.events(), chars("def"));
}
