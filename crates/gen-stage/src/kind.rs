//! The three kinds of stage, as type-level markers.
//!
//! Users implement [`Producer`](crate::Producer), [`Consumer`](crate::Consumer) or [`ProducerConsumer`](crate::ProducerConsumer) on their own type;
//! handles and contexts are generic over a marker that names the kind, so that the
//! methods shared by every kind are written once. The aliases ([`ProducerRef`],
//! [`ConsumerContext`], ...) are what users write.
//!
//! [`ProducerRef`]: crate::ProducerRef
//! [`ConsumerContext`]: crate::ConsumerContext

use std::fmt;
use std::marker::PhantomData;

mod sealed {
    pub trait Sealed {}
}

/// A kind of stage: what it receives, what it emits, which messages it takes.
///
/// Sealed: implemented by [`ProducerKind`], [`ConsumerKind`] and
/// [`ProducerConsumerKind`] only.
pub trait StageKind: sealed::Sealed + Send + 'static {
    /// The user's stage type.
    type Stage: Send + 'static;
    /// Events the stage receives (`Infallible` for producers).
    type In: Send + 'static;
    /// Events the stage emits (`Infallible` for consumers).
    type Out: Send + 'static;
    /// Messages the stage takes through calls, casts and infos.
    type Message: Send + 'static;
}

/// Kinds that emit events: producers and producer-consumers.
pub trait EmitsEvents: StageKind {}

/// Kinds that receive events: consumers and producer-consumers.
pub trait ReceivesEvents: StageKind {}

/// The kind of a [`Producer`](crate::Producer) `S`.
pub struct ProducerKind<S>(PhantomData<fn() -> S>);
/// The kind of a [`Consumer`](crate::Consumer) `S`.
pub struct ConsumerKind<S>(PhantomData<fn() -> S>);
/// The kind of a [`ProducerConsumer`](crate::ProducerConsumer) `S`.
pub struct ProducerConsumerKind<S>(PhantomData<fn() -> S>);

impl<S> sealed::Sealed for ProducerKind<S> {}
impl<S> sealed::Sealed for ConsumerKind<S> {}
impl<S> sealed::Sealed for ProducerConsumerKind<S> {}

impl<S> fmt::Debug for ProducerKind<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProducerKind")
    }
}

impl<S> fmt::Debug for ConsumerKind<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConsumerKind")
    }
}

impl<S> fmt::Debug for ProducerConsumerKind<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProducerConsumerKind")
    }
}
