//! The point in a stage's stream of events that an info message waits behind.

/// A point in the stream of events a stage has dispatched: the stage hands one to
/// [`Dispatcher::queue_marker`] when something must wait until every event dispatched
/// before it has gone out (an info message, a cancellation), and handles that once the
/// dispatcher gives the marker back with [`Deliveries::release`].
///
/// A marker is released once: it cannot be copied, and releasing moves it.
///
/// [`Dispatcher::queue_marker`]: super::Dispatcher::queue_marker
/// [`Deliveries::release`]: super::Deliveries::release
#[derive(Debug, PartialEq, Eq)]
pub struct Marker(u64);

impl Marker {
    /// The marker numbered `id` (the stage numbers them in the order it queues them).
    pub(crate) fn new(id: u64) -> Self {
        Marker(id)
    }

    pub(crate) fn id(&self) -> u64 {
        self.0
    }
}
