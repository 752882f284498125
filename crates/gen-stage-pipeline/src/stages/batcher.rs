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

/// A batcher's timer: the batch opened as number `.0` has waited its timeout.
#[derive(Debug)]
pub(crate) struct BatcherTick(u64);

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
    /// The open batch of messages without a key (the usual case: no hashing).
    unkeyed: Option<OpenBatch<T>>,
    keyed: HashMap<BatchKey, OpenBatch<T>>,
    /// The open batches' keys, by number: the first is the oldest.
    opened: BTreeMap<u64, Option<BatchKey>>,
    next_number: u64,
    /// The processors it receives from.
    upstream: HashSet<SubscriptionTag>,
    activity: Arc<Activity>,
    /// Messages in open batches.
    held: u64,
}

impl<T: Send + 'static> Batcher<T> {
    pub(crate) fn new(name: Arc<str>, options: &BatcherOptions, activity: Arc<Activity>) -> Self {
        Batcher {
            name,
            size: options.batch_size,
            timeout: options.batch_timeout,
            max_open_keys: options.max_open_keys,
            unkeyed: None,
            keyed: HashMap::new(),
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
        let overflows = self
            .batch_mut(&message.batch_key)
            .is_some_and(|batch| batch.weight.saturating_add(weight) > size);
        if overflows {
            let key = message.batch_key.clone();
            closed.extend(self.close(&key, BatchTrigger::Size, ctx));
        }
        if self.batch_mut(&message.batch_key).is_none() {
            if self.keyed.len() + usize::from(self.unkeyed.is_some()) >= self.max_open_keys {
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
            self.opened.insert(number, message.batch_key.clone());
            match message.batch_key.clone() {
                None => self.unkeyed = Some(batch),
                Some(key) => {
                    self.keyed.insert(key, batch);
                }
            }
        }
        // The key of a batch this message fills (cloned once per batch, not per message).
        let filled = match self.batch_mut(&message.batch_key) {
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
            closed.extend(self.close(&key, BatchTrigger::Size, ctx));
        }
    }

    /// The open batch of `key`.
    fn batch_mut(&mut self, key: &Option<BatchKey>) -> Option<&mut OpenBatch<T>> {
        match key {
            None => self.unkeyed.as_mut(),
            Some(key) => self.keyed.get_mut(key),
        }
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
        key: &Option<BatchKey>,
        trigger: BatchTrigger,
        ctx: &mut ProducerConsumerContext<'_, Self>,
    ) -> Option<Batch<T>> {
        let batch = match key {
            None => self.unkeyed.take(),
            Some(key) => self.keyed.remove(key),
        }?;
        self.opened.remove(&batch.number);
        ctx.cancel_timer(batch.timer);
        tracing::trace!(batcher = %self.name, size = batch.messages.len(), ?trigger, "batch closed");
        Some(Batch::new(
            batch.messages,
            self.name.clone(),
            key.clone(),
            trigger,
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
        for message in messages {
            self.add(message, &mut closed, ctx);
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
        if let Some(key) = self.opened.get(&number).cloned() {
            if let Some(batch) = self.close(&key, BatchTrigger::Timeout, ctx) {
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
            let keys: Vec<Option<BatchKey>> = self.opened.values().cloned().collect();
            let batches: Vec<Batch<T>> = keys
                .iter()
                .filter_map(|key| self.close(key, BatchTrigger::Flush, ctx))
                .collect();
            self.publish_held(&batches);
            ctx.emit(batches);
        }
        Ok(())
    }
}
