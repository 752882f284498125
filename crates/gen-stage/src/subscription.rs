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
