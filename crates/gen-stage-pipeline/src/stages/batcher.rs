//! A batcher: groups the messages routed to it into batches, one open batch per
//! batch key, each closed by size (or weight), by its own timeout from its first
//! message, when too many keys are open (the oldest), or by the pipeline's drain.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gen_stage::{
    AskMode, BoxError, CancelReason, ProducerConsumer, ProducerConsumerContext, SubscribeOptions,
    SubscriptionTag, TimerRef,
};

use crate::activity::Activity;
use crate::batch::{Batch, BatchTrigger};
use crate::message::{BatchKey, Message};
use crate::options::BatcherOptions;
use crate::topology::PartitionKey;

/// A batcher's timer: the batch opened as number `.0` has waited its timeout.
#[derive(Debug)]
pub(crate) struct BatcherTick(u64);

/// Where a batch is filled: its key, and its partition among the batch processors
/// (0 unless the pipeline partitions).
type Slot = (Option<BatchKey>, u32);

/// A batch being filled.
struct OpenBatch<T> {
    messages: Vec<Message<T>>,
    weight: usize,
    /// Its number, in the order batches were opened.
    number: u64,
    timer: TimerRef,
}

pub(crate) struct Batcher<T> {
    name: Arc<str>,
    size: usize,
    timeout: Duration,
    max_open_keys: usize,
    /// The open batch of messages without a key, by partition (the usual case: no
    /// hashing).
    unkeyed: Vec<Option<OpenBatch<T>>>,
    /// The open batches of each key, by partition.
    keyed: HashMap<BatchKey, Vec<Option<OpenBatch<T>>>>,
    /// How many batches are open.
    open: usize,
    partitions: u32,
    /// The open batches' slots, by number: the first is the oldest.
    opened: BTreeMap<u64, Slot>,
    /// With `partition_by` and more than one batch processor: each message's
    /// partition among them. Its batch is of that partition, and goes to that batch
    /// processor, so that a key's messages are handled in order.
    partition: Option<(PartitionKey<T>, u32)>,
    next_number: u64,
    /// The processors it receives from.
    upstream: HashSet<SubscriptionTag>,
    activity: Arc<Activity>,
    /// Messages in open batches.
    held: u64,
}

impl<T: Send + 'static> Batcher<T> {
    pub(crate) fn new(
        name: Arc<str>,
        options: &BatcherOptions,
        partition_by: Option<PartitionKey<T>>,
        activity: Arc<Activity>,
    ) -> Self {
        let partitions = options.concurrency.max(1) as u32;
        let partition = partition_by
            .filter(|_| partitions > 1)
            .map(|key| (key, partitions));
        Batcher {
            name,
            size: options.batch_size,
            timeout: options.batch_timeout,
            max_open_keys: options.max_open_keys,
            unkeyed: (0..partitions).map(|_| None).collect(),
            keyed: HashMap::new(),
            open: 0,
            partitions,
            partition,
            opened: BTreeMap::new(),
            next_number: 0,
            upstream: HashSet::new(),
            activity,
            held: 0,
        }
    }

    /// Adds a message to its key's batch, closing batches as it must: the key's own
    /// if the message would take it past its size, the oldest if a new key finds too
    /// many open, the key's again once full.
    fn add(
        &mut self,
        message: Message<T>,
        closed: &mut Vec<Batch<T>>,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) {
        let weight = message.weight as usize;
        let size = self.size;
        let part = match &self.partition {
            Some((key, partitions)) => (key(&message) % u64::from(*partitions)) as u32,
            None => 0,
        };
        let overflows = self
            .batch_mut(&message.batch_key, part)
            .is_some_and(|batch| batch.weight.saturating_add(weight) > size);
        if overflows {
            let slot = (message.batch_key.clone(), part);
            closed.extend(self.close(&slot, BatchTrigger::Size, ctx));
        }
        if self.batch_mut(&message.batch_key, part).is_none() {
            self.open_batch((message.batch_key.clone(), part), closed, ctx);
        }
        // The key of a batch this message fills (cloned once per batch, not per message).
        let filled = match self.batch_mut(&message.batch_key, part) {
            Some(batch) => {
                batch.weight = batch.weight.saturating_add(weight);
                batch.messages.push(message);
                (batch.weight >= size).then(|| {
                    batch
                        .messages
                        .last()
                        .and_then(|last| last.batch_key.clone())
                })
            }
            None => None,
        };
        if let Some(key) = filled {
            closed.extend(self.close(&(key, part), BatchTrigger::Size, ctx));
        }
    }

    /// Opens the batch of `slot`, its timer running; the oldest open batch closes
    /// first if as many are open as the bound allows.
    fn open_batch(
        &mut self,
        (key, part): Slot,
        closed: &mut Vec<Batch<T>>,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) {
        if self.open >= self.max_open_keys {
            if let Some(oldest) = self.opened.values().next().cloned() {
                closed.extend(self.close(&oldest, BatchTrigger::KeyLimit, ctx));
            }
        }
        let number = self.next_number;
        self.next_number += 1;
        let batch = OpenBatch {
            // Sized at once (a batch of a count fills it; one of a weight in bytes
            // gets a start): no regrowth, no slack beyond the size.
            messages: Vec::with_capacity(self.size.min(1024)),
            weight: 0,
            number,
            timer: ctx.send_after(self.timeout, BatcherTick(number)),
        };
        self.opened.insert(number, (key.clone(), part));
        self.open += 1;
        let partitions = self.partitions;
        let place = match key {
            None => &mut self.unkeyed[part as usize],
            Some(key) => {
                let parts = self
                    .keyed
                    .entry(key)
                    .or_insert_with(|| (0..partitions).map(|_| None).collect());
                &mut parts[part as usize]
            }
        };
        *place = Some(batch);
    }

    /// Adds messages without a key, each of weight 1, in a batcher of one partition
    /// (the usual case): moved into batches in runs rather than one by one, and a whole
    /// batch's worth closes at once, without a timer.
    fn add_plain(
        &mut self,
        messages: Vec<Message<T>>,
        closed: &mut Vec<Batch<T>>,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) {
        let size = self.size;
        let mut rest = messages.into_iter();
        while rest.len() > 0 {
            if let Some(batch) = self.unkeyed[0].as_mut() {
                let take = size.saturating_sub(batch.weight).min(rest.len());
                batch.messages.extend(rest.by_ref().take(take));
                batch.weight += take;
                if batch.weight >= size {
                    closed.extend(self.close(&(None, 0), BatchTrigger::Size, ctx));
                }
            } else if rest.len() >= size {
                // A whole batch at once: it never waits, so it needs no timer.
                let messages: Vec<Message<T>> = rest.by_ref().take(size).collect();
                closed.push(Batch::new(
                    messages,
                    self.name.clone(),
                    None,
                    BatchTrigger::Size,
                    0,
                ));
            } else {
                self.open_batch((None, 0), closed, ctx);
            }
        }
    }

    /// The open batch of `key` in partition `part`.
    fn batch_mut(&mut self, key: &Option<BatchKey>, part: u32) -> Option<&mut OpenBatch<T>> {
        let place = match key {
            None => self.unkeyed.get_mut(part as usize)?,
            Some(key) => self.keyed.get_mut(key)?.get_mut(part as usize)?,
        };
        place.as_mut()
    }

    /// Shows the messages left in open batches once `closed` go.
    fn publish_held(&mut self, closed: &[Batch<T>]) {
        let gone: usize = closed.iter().map(Batch::len).sum();
        self.held = self.held.saturating_sub(gone as u64);
        self.activity
            .in_flight
            .store(self.held, std::sync::atomic::Ordering::Relaxed);
    }

    /// Closes the open batch of `key`, if there is one.
    fn close(
        &mut self,
        (key, part): &Slot,
        trigger: BatchTrigger,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Option<Batch<T>> {
        let batch = match key {
            None => self.unkeyed.get_mut(*part as usize)?.take(),
            Some(name) => {
                let parts = self.keyed.get_mut(name)?;
                let batch = parts.get_mut(*part as usize)?.take();
                if parts.iter().all(Option::is_none) {
                    self.keyed.remove(name);
                }
                batch
            }
        }?;
        self.open -= 1;
        self.opened.remove(&batch.number);
        ctx.cancel_timer(batch.timer);
        tracing::trace!(batcher = %self.name, size = batch.messages.len(), ?trigger, "batch closed");
        Some(Batch::new(
            batch.messages,
            self.name.clone(),
            key.clone(),
            trigger,
            *part,
        ))
    }
}

impl<T: Send + 'static> ProducerConsumer for Batcher<T> {
    type Input = Message<T>;
    type Output = Batch<T>;
    type Message = BatcherTick;

    async fn handle_producer_subscribed(
        &mut self,
        tag: SubscriptionTag,
        _options: &SubscribeOptions,
        _ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<AskMode, BoxError> {
        self.upstream.insert(tag);
        Ok(AskMode::Automatic)
    }

    async fn handle_events(
        &mut self,
        messages: Vec<Message<T>>,
        _from: SubscriptionTag,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<Vec<Batch<T>>, BoxError> {
        let mut closed = Vec::new();
        let count = messages.len();
        let plain = self.partition.is_none()
            && messages
                .iter()
                .all(|message| message.batch_key.is_none() && message.weight == 1);
        if plain {
            self.add_plain(messages, &mut closed, ctx);
        } else {
            for message in messages {
                self.add(message, &mut closed, ctx);
            }
        }
        self.activity.count(count);
        self.held += count as u64;
        self.publish_held(&closed);
        Ok(closed)
    }

    async fn handle_message(
        &mut self,
        BatcherTick(number): BatcherTick,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        if let Some(slot) = self.opened.get(&number).cloned() {
            if let Some(batch) = self.close(&slot, BatchTrigger::Timeout, ctx) {
                let closed = vec![batch];
                self.publish_held(&closed);
                ctx.emit(closed);
            }
        }
        Ok(())
    }

    async fn handle_cancel(
        &mut self,
        tag: SubscriptionTag,
        _reason: &CancelReason,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        // Once every processor is gone (the pipeline drains), the open batches go,
        // oldest first.
        if self.upstream.remove(&tag) && self.upstream.is_empty() {
            let slots: Vec<Slot> = self.opened.values().cloned().collect();
            let batches: Vec<Batch<T>> = slots
                .iter()
                .filter_map(|slot| self.close(slot, BatchTrigger::Flush, ctx))
                .collect();
            self.publish_held(&batches);
            ctx.emit(batches);
        }
        Ok(())
    }
}
