//! What a consumer can subscribe to: a handle to a stage that emits its events.

use crate::wire::ProducerPort;

/// A handle a consumer can subscribe to: a [`StageRef`](crate::StageRef) of a stage that
/// emits `T`, or an [`AnyProducer<T>`](crate::AnyProducer). Every `subscribe_to` takes
/// one. It is sealed: only this crate's handles implement it.
pub trait Upstream<T>: sealed::Ports<T> {}

pub(crate) mod sealed {
    use crate::wire::ProducerPort;

    /// The way into a producer, for a subscription.
    pub struct Port<T>(pub(crate) Box<dyn ProducerPort<T>>);

    impl<T> std::fmt::Debug for Port<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_tuple("Port").field(&self.0.stage_id()).finish()
        }
    }

    /// How a subscription reaches the producer behind a handle.
    pub trait Ports<T> {
        /// A port that does not keep the producer reachable (a stage's table).
        fn port(&self) -> Port<T>;
        /// A port that keeps it reachable (a stream's, held by user code).
        fn held_port(&self) -> Port<T>;
    }
}

impl<T> sealed::Port<T> {
    pub(crate) fn into_inner(self) -> Box<dyn ProducerPort<T>> {
        self.0
    }
}
