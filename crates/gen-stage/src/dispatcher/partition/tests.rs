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
