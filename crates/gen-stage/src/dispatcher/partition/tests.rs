//! Unit tests of the partition dispatcher.

use super::*;
use crate::subscription::StageId;

type Parts = PartitionDispatcher<u32, usize>;

fn tag(n: u64) -> SubscriptionTag {
    SubscriptionTag::from_raw(n)
}

fn by_parity() -> Parts {
    PartitionDispatcher::by_count(2, |x: &u32| (*x % 2) as usize)
}

fn subscribe(d: &mut Parts, t: u64, options: SubscribeOptions) -> Result<usize, BoxError> {
    let subscriber = Subscriber::new(tag(t), StageId::from_raw(t), &options);
    d.subscribe(&subscriber, &mut Deliveries::new())
}

fn take(deliveries: &mut Deliveries<u32>) -> Vec<(SubscriptionTag, Vec<u32>)> {
    deliveries.drain().collect()
}

#[test]
fn events_go_to_their_partition_in_order() {
    let mut d = by_parity();
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0usize))).unwrap();
    subscribe(&mut d, 2, SubscribeOptions::new().with(Partition(1usize))).unwrap();
    let mut out = Deliveries::new();
    assert_eq!(d.ask(tag(1), 3, &mut out), 3);
    assert_eq!(d.ask(tag(2), 3, &mut out), 3);
    let left = d.dispatch(vec![1, 2, 3, 4, 5, 6], &mut out);
    assert!(left.is_empty());
    assert_eq!(
        take(&mut out),
        vec![(tag(1), vec![2, 4, 6]), (tag(2), vec![1, 3, 5])]
    );
}

#[test]
fn events_beyond_upstream_demand_are_left_to_the_stage() {
    let mut d = by_parity();
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), 2, &mut out);
    let left = d.dispatch(vec![2, 4, 6, 8], &mut out);
    assert_eq!(left, vec![6, 8]);
    assert_eq!(take(&mut out), vec![(tag(1), vec![2, 4])]);
}

#[test]
fn events_without_demand_in_their_partition_are_held_then_released_on_ask() {
    let mut d = by_parity();
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), 4, &mut out);
    // Odd events have no consumer: held for partition 1.
    assert!(d.dispatch(vec![1, 2, 3], &mut out).is_empty());
    assert_eq!(take(&mut out), vec![(tag(1), vec![2])]);
    assert_eq!(Dispatcher::<u32>::held(&d), 2);
    subscribe(&mut d, 2, SubscribeOptions::new().with(Partition(1))).unwrap();
    d.ask(tag(2), 1, &mut out);
    assert_eq!(take(&mut out), vec![(tag(2), vec![1])]);
    d.ask(tag(2), 5, &mut out);
    assert_eq!(take(&mut out), vec![(tag(2), vec![3])]);
    assert_eq!(Dispatcher::<u32>::held(&d), 0);
}

/// One partition, "small", for events under 10 (the rest discarded), whose one
/// consumer (tag 1) has asked for 2.
fn small_only_asked_for_two() -> (PartitionDispatcher<u32, &'static str>, Deliveries<u32>) {
    let mut d = PartitionDispatcher::new(["small"], |x: &u32| (*x < 10).then_some("small"));
    let options = SubscribeOptions::new().with(Partition("small"));
    let subscriber = Subscriber::new(tag(1), StageId::from_raw(1), &options);
    d.subscribe(&subscriber, &mut Deliveries::new()).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), 2, &mut out);
    (d, out)
}

#[test]
fn none_discards_without_consuming_demand() {
    let (mut d, mut out) = small_only_asked_for_two();
    assert!(d.dispatch(vec![50, 1, 60, 2], &mut out).is_empty());
    assert_eq!(out.take_discarded(), 2);
    assert_eq!(take(&mut out), vec![(tag(1), vec![1, 2])]);
}

#[test]
fn routing_stops_where_demand_runs_out_even_amid_discards() {
    let (mut d, mut out) = small_only_asked_for_two();
    // 1 and 2 take the demand, 50 between them is discarded; 60 and 3 come after
    // the demand ran out and are left, in order and unrouted (60 is not discarded).
    assert_eq!(d.dispatch(vec![1, 50, 2, 60, 3], &mut out), vec![60, 3]);
    assert_eq!(out.take_discarded(), 1);
    assert_eq!(take(&mut out), vec![(tag(1), vec![1, 2])]);
    assert_eq!(d.waiting, 0);
}

#[test]
fn missing_unknown_and_taken_partitions_are_refused() {
    let mut d = by_parity();
    let missing = subscribe(&mut d, 1, SubscribeOptions::new()).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "subscribing to a partition dispatcher requires a gen_stage::dispatcher::Partition<usize> option"
    );
    let unknown = subscribe(&mut d, 2, SubscribeOptions::new().with(Partition(7))).unwrap_err();
    assert_eq!(unknown.to_string(), "unknown partition 7");
    subscribe(&mut d, 3, SubscribeOptions::new().with(Partition(0))).unwrap();
    let taken = subscribe(&mut d, 4, SubscribeOptions::new().with(Partition(0))).unwrap_err();
    assert_eq!(taken.to_string(), "partition 0 is already taken");
}

#[test]
fn shared_partitions_split_their_events_by_demand() {
    let mut d = by_parity().shared();
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    subscribe(&mut d, 2, SubscribeOptions::new().with(Partition(0))).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), 2, &mut out);
    d.ask(tag(2), 2, &mut out);
    assert!(d.dispatch(vec![2, 4, 6, 8], &mut out).is_empty());
    assert_eq!(
        take(&mut out),
        vec![(tag(1), vec![2, 4]), (tag(2), vec![6, 8])]
    );
}

#[test]
fn held_events_stay_for_the_next_consumer_of_the_partition() {
    let mut d = by_parity();
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), 1, &mut out);
    subscribe(&mut d, 9, SubscribeOptions::new().with(Partition(1))).unwrap();
    d.ask(tag(9), 3, &mut out);
    // Demand 4 upstream; partition 0 can take one event now.
    assert!(d.dispatch(vec![2, 4, 6, 1], &mut out).is_empty());
    assert_eq!(take(&mut out), vec![(tag(1), vec![2]), (tag(9), vec![1])]);
    assert_eq!(d.cancel(tag(1), &mut out), 0);
    subscribe(&mut d, 3, SubscribeOptions::new().with(Partition(0))).unwrap();
    // The events held for partition 0 go to its next consumer first.
    assert_eq!(d.ask(tag(3), 5, &mut out), 5);
    assert_eq!(take(&mut out), vec![(tag(3), vec![4, 6])]);
}

#[test]
fn the_hold_limit_discards_and_counts() {
    let mut d = by_parity().hold_limit(2, BufferKeep::Last);
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), 10, &mut out);
    // Partition 1 has no consumer: only its last 2 events are kept.
    assert!(d.dispatch(vec![1, 3, 5, 7], &mut out).is_empty());
    assert_eq!(out.take_discarded(), 2);
    subscribe(&mut d, 2, SubscribeOptions::new().with(Partition(1))).unwrap();
    d.ask(tag(2), 10, &mut out);
    assert_eq!(take(&mut out), vec![(tag(2), vec![5, 7])]);
}

#[test]
fn partition_numbers_may_be_any_integer_type() {
    let mut d = by_parity();
    assert!(subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(1i32))).is_ok());
    assert!(subscribe(&mut d, 2, SubscribeOptions::new().with(Partition(0u64))).is_ok());
    let mut d = by_parity();
    assert!(subscribe(&mut d, 3, SubscribeOptions::new().with(Partition(1i8))).is_ok());
}

#[test]
fn the_debug_text_names_the_partitions_and_what_is_held() {
    let mut d = by_parity();
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), 5, &mut out);
    // 1 and 3 are held for partition 1, which has no consumer; 2 upstream demand waits.
    assert!(d.dispatch(vec![1, 2, 3], &mut out).is_empty());
    assert_eq!(
        format!("{d:?}"),
        "PartitionDispatcher { partitions: [0, 1], shared: false, held: 2, waiting: 2, .. }"
    );
}

#[test]
fn queued_events_go_in_order_to_the_consumers_with_demand_most_demand_first() {
    let mut partition = PartitionState {
        consumers: vec![(tag(1), 2), (tag(2), 1), (tag(3), 0)],
        queue: BatchQueue::from(vec![1, 2, 3, 4]),
        left_queue: 5,
        last_ask: 0,
    };
    let mut out = Deliveries::new();
    partition.deliver(&mut out);
    assert_eq!(
        take(&mut out),
        vec![(tag(1), vec![1, 2]), (tag(2), vec![3])]
    );
    // 4 waits for demand; the three sent have left the queue.
    assert_eq!(partition.queue.events(), [4]);
    assert_eq!(partition.left_queue, 8);
}

/// The ids of the markers given back since the last call.
fn released(out: &mut Deliveries<u32>) -> Vec<u64> {
    out.take_released().map(|marker| marker.id()).collect()
}

#[test]
fn a_marker_comes_back_once_the_events_held_before_it_have_gone_not_those_held_after() {
    let mut d = by_parity();
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), 3, &mut out);
    // 2 goes out at once, 1 and 3 are held for partition 1.
    assert!(d.dispatch(vec![1, 3, 2], &mut out).is_empty());
    assert_eq!(take(&mut out), vec![(tag(1), vec![2])]);
    d.queue_marker(Marker::new(1), &mut out);
    assert!(released(&mut out).is_empty());
    subscribe(&mut d, 2, SubscribeOptions::new().with(Partition(1))).unwrap();
    d.ask(tag(2), 1, &mut out);
    assert_eq!(take(&mut out), vec![(tag(2), vec![1])]);
    assert!(released(&mut out).is_empty(), "3 is still held");
    // 5 is held after the marker; a second marker waits for it, behind the first.
    assert!(d.dispatch(vec![5], &mut out).is_empty());
    d.queue_marker(Marker::new(2), &mut out);
    d.ask(tag(2), 1, &mut out);
    assert_eq!(take(&mut out), vec![(tag(2), vec![3])]);
    assert_eq!(Dispatcher::<u32>::held(&d), 1);
    assert_eq!(released(&mut out), [1], "the first does not wait for 5");
    d.ask(tag(2), 1, &mut out);
    assert_eq!(released(&mut out), [2]);
    // A marker queued when nothing is held comes back at once.
    d.queue_marker(Marker::new(3), &mut out);
    assert_eq!(released(&mut out), [3]);
}

#[test]
fn events_dropped_from_the_front_at_the_hold_limit_release_a_marker_waiting_for_them() {
    let mut d = by_parity().hold_limit(2, BufferKeep::Last);
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), 4, &mut out);
    // Partition 1 has no consumer: 1 and 3 are held.
    assert!(d.dispatch(vec![1, 3], &mut out).is_empty());
    d.queue_marker(Marker::new(1), &mut out);
    assert!(released(&mut out).is_empty());
    // 5 and 7 push 1 and 3 out: what the marker waited for has gone.
    assert!(d.dispatch(vec![5, 7], &mut out).is_empty());
    assert_eq!(out.take_discarded(), 2);
    assert_eq!(Dispatcher::<u32>::held(&d), 2);
    assert_eq!(released(&mut out), [1]);
}

#[test]
fn demand_a_cancelled_consumer_had_asked_is_counted_against_new_asks_only_once() {
    let mut d = by_parity();
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    let mut out = Deliveries::new();
    assert_eq!(d.ask(tag(1), 3, &mut out), 3);
    // The 3 asked upstream for tag 1 will still come.
    d.cancel(tag(1), &mut out);
    subscribe(&mut d, 2, SubscribeOptions::new().with(Partition(0))).unwrap();
    assert_eq!(d.ask(tag(2), 2, &mut out), 0);
    assert_eq!(d.ask(tag(2), 2, &mut out), 1);
    assert_eq!(d.ask(tag(2), 2, &mut out), 2);
}

#[test]
fn a_dispatch_with_nothing_for_a_shared_partition_keeps_its_consumers_turns() {
    let mut d = by_parity().shared();
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    subscribe(&mut d, 2, SubscribeOptions::new().with(Partition(0))).unwrap();
    subscribe(&mut d, 3, SubscribeOptions::new().with(Partition(1))).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), 2, &mut out);
    d.ask(tag(2), 2, &mut out);
    d.ask(tag(3), 1, &mut out);
    // Only an odd event: tags 1 and 2 are not served and keep their order.
    assert!(d.dispatch(vec![1], &mut out).is_empty());
    assert_eq!(take(&mut out), vec![(tag(3), vec![1])]);
    assert!(d.dispatch(vec![2, 4, 6, 8], &mut out).is_empty());
    assert_eq!(
        take(&mut out),
        vec![(tag(1), vec![2, 4]), (tag(2), vec![6, 8])]
    );
}

/// Partitions 0 and 1 by parity, each consumer having asked `ask`.
fn two_asking(ask: usize) -> (Parts, Deliveries<u32>) {
    let mut d = by_parity();
    subscribe(&mut d, 1, SubscribeOptions::new().with(Partition(0))).unwrap();
    subscribe(&mut d, 2, SubscribeOptions::new().with(Partition(1))).unwrap();
    let mut out = Deliveries::new();
    d.ask(tag(1), ask, &mut out);
    d.ask(tag(2), ask, &mut out);
    (d, out)
}

#[test]
fn while_more_mail_waits_shares_smaller_than_the_last_ask_are_held_back_until_they_make_it_up() {
    let (mut d, mut out) = two_asking(4);
    out.set_more_mail_waiting(true);
    assert!(d.dispatch(vec![1, 2], &mut out).is_empty());
    assert!(take(&mut out).is_empty());
    assert_eq!(d.held(), 2);
    // Partition 0 reaches its ask of 4 and goes out whole; partition 1 (3 events)
    // waits on.
    assert!(d.dispatch(vec![4, 6, 8, 3], &mut out).is_empty());
    assert_eq!(take(&mut out), vec![(tag(1), vec![2, 4, 6, 8])]);
    assert_eq!(d.held(), 2);
}

#[test]
fn what_was_held_back_goes_out_when_the_mailbox_is_empty() {
    let (mut d, mut out) = two_asking(4);
    out.set_more_mail_waiting(true);
    assert!(d.dispatch(vec![1, 2, 3], &mut out).is_empty());
    assert!(take(&mut out).is_empty());
    d.idle(&mut out);
    assert_eq!(
        take(&mut out),
        vec![(tag(1), vec![2]), (tag(2), vec![1, 3])]
    );
    assert_eq!(d.held(), 0);
    // With no more mail waiting, nothing is held back.
    out.set_more_mail_waiting(false);
    assert!(d.dispatch(vec![5], &mut out).is_empty());
    assert_eq!(take(&mut out), vec![(tag(2), vec![5])]);
}

#[test]
fn holding_back_lasts_at_most_as_many_dispatches_as_there_are_partitions() {
    let (mut d, mut out) = two_asking(100);
    out.set_more_mail_waiting(true);
    assert!(d.dispatch(vec![1, 2], &mut out).is_empty());
    assert!(d.dispatch(vec![3, 4], &mut out).is_empty());
    assert!(take(&mut out).is_empty());
    // The third dispatch in a row may not hold back: everything goes out.
    assert!(d.dispatch(vec![5, 6], &mut out).is_empty());
    assert_eq!(
        take(&mut out),
        vec![(tag(1), vec![2, 4, 6]), (tag(2), vec![1, 3, 5])]
    );
    assert_eq!(d.held(), 0);
}

#[test]
fn a_consumer_that_asks_takes_what_was_held_back_for_it() {
    let (mut d, mut out) = two_asking(4);
    out.set_more_mail_waiting(true);
    assert!(d.dispatch(vec![1, 2], &mut out).is_empty());
    d.ask(tag(1), 1, &mut out);
    assert_eq!(take(&mut out), vec![(tag(1), vec![2])]);
    assert_eq!(d.held(), 1);
}

#[test]
fn a_marker_waits_for_what_was_held_back() {
    let (mut d, mut out) = two_asking(4);
    out.set_more_mail_waiting(true);
    assert!(d.dispatch(vec![1], &mut out).is_empty());
    d.queue_marker(Marker::new(7), &mut out);
    assert!(released(&mut out).is_empty());
    d.idle(&mut out);
    assert_eq!(take(&mut out), vec![(tag(2), vec![1])]);
    assert_eq!(released(&mut out), vec![7]);
}
