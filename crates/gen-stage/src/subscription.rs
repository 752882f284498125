//! Subscription identities.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Names one subscription, on both its sides.
///
/// The consumer gets it when it subscribes and passes it to `ask` and `cancel`; the
/// producer and its dispatcher see the same tag for the same consumer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionTag(u64);

impl SubscriptionTag {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SubscriptionTag(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// A tag with the given number, for testing dispatchers outside a stage.
    ///
    /// Stages never hand out tags made this way; use small numbers in tests.
    pub fn from_raw(number: u64) -> Self {
        SubscriptionTag(number)
    }

    /// The number of the tag, unique within the process.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for SubscriptionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub#{}", self.0)
    }
}

impl fmt::Display for SubscriptionTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub#{}", self.0)
    }
}

/// Identifies a running stage, unique within the process.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId(u64);

impl StageId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        StageId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// An identity with the given number, for testing dispatchers outside a stage.
    pub fn from_raw(number: u64) -> Self {
        StageId(number)
    }

    /// The number of the stage.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage#{}", self.0)
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage#{}", self.0)
    }
}

/// A map keyed by subscription tags. Tags are unique numbers, so hashing them needs
/// no protection against chosen keys: a multiplication spreads them (Fibonacci
/// hashing), far cheaper than the default SipHash on the per-batch path.
pub(crate) type TagMap<V> = std::collections::HashMap<SubscriptionTag, V, BuildTagHasher>;

/// Builds [`TagHasher`]s.
pub(crate) type BuildTagHasher = std::hash::BuildHasherDefault<TagHasher>;

/// Hashes one `u64` by multiplying it with 2^64 / φ.
#[derive(Default)]
pub(crate) struct TagHasher(u64);

impl std::hash::Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// How a consumer asks for events on a subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AskMode {
    /// The stage asks `max_demand` at once and tops up after each batch (the default).
    #[default]
    Automatic,
    /// The stage asks nothing by itself: call [`ConsumerContext::ask`](crate::ConsumerContext::ask) or
    /// [`ConsumerRef::ask`](crate::StageRef::ask). Each delivery then reaches
    /// `handle_events` as one batch.
    Manual,
}
