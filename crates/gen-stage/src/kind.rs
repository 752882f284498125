//! The three kinds of stage, as type-level markers.
//!
//! Users implement [`Producer`](crate::Producer), [`Consumer`](crate::Consumer) or [`ProducerConsumer`](crate::ProducerConsumer) on their own type;
//! handles and contexts are generic over a marker that names the kind, so that the
//! methods shared by every kind are written once. The aliases ([`ProducerRef`],
//! [`ConsumerContext`], ...) are what users write.
//!
//! [`ProducerRef`]: crate::ProducerRef
//! [`ConsumerContext`]: crate::ConsumerContext

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;

pub(crate) mod sealed {
    /// Which halves a kind of stage has, as the proofs its mail carries (see
    /// `crate::wire::Envelope`): `()` for a half it has, `Infallible` for one it lacks,
    /// so that nobody can build mail for a half a stage does not have.
    pub trait Halves {
        /// The consumer half's proof.
        type Receives: Send + 'static;
        /// The producer half's proof.
        type Emits: Send + 'static;
    }
}

/// A kind of stage: what it receives, what it emits, which messages it takes.
///
/// Sealed: implemented by [`ProducerKind`], [`ConsumerKind`] and
/// [`ProducerConsumerKind`] only.
pub trait StageKind: sealed::Halves + Send + 'static {
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
pub trait EmitsEvents: StageKind + sealed::Halves<Emits = ()> {}

/// Kinds that receive events: consumers and producer-consumers.
pub trait ReceivesEvents: StageKind + sealed::Halves<Receives = ()> {}

/// The kind of a [`Producer`](crate::Producer) `S`.
pub struct ProducerKind<S>(PhantomData<fn() -> S>);
/// The kind of a [`Consumer`](crate::Consumer) `S`.
pub struct ConsumerKind<S>(PhantomData<fn() -> S>);
/// The kind of a [`ProducerConsumer`](crate::ProducerConsumer) `S`.
pub struct ProducerConsumerKind<S>(PhantomData<fn() -> S>);

impl<S> sealed::Halves for ProducerKind<S> {
    type Receives = Infallible;
    type Emits = ();
}

impl<S> sealed::Halves for ConsumerKind<S> {
    type Receives = ();
    type Emits = Infallible;
}

impl<S> sealed::Halves for ProducerConsumerKind<S> {
    type Receives = ();
    type Emits = ();
}

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
