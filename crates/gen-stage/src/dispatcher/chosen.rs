//! The dispatcher a stage runs, as the stage holds it.

use std::any::Any;

use crate::dispatcher::{Deliveries, DemandDispatcher, Dispatcher, Marker, Subscriber};
use crate::exit::BoxError;
use crate::subscription::SubscriptionTag;

/// A stage's dispatcher: the default [`DemandDispatcher`] held as itself, so that the
/// calls every event makes to it are direct and inlined into the stage's, or any other
/// behind a pointer. Both behave exactly as the dispatcher does.
pub(crate) enum ChosenDispatcher<T> {
    Demand(DemandDispatcher),
    Other(Box<dyn Dispatcher<T>>),
}

/// Calls `$method` on whichever dispatcher is held.
macro_rules! on_chosen {
    ($self:ident.$method:ident($($argument:expr),*)) => {
        match $self {
            ChosenDispatcher::Demand(dispatcher) => {
                Dispatcher::<T>::$method(dispatcher, $($argument),*)
            }
            ChosenDispatcher::Other(dispatcher) => dispatcher.$method($($argument),*),
        }
    };
}

impl<T: Send + 'static> ChosenDispatcher<T> {
    /// Holds `dispatcher`: as itself if it is a [`DemandDispatcher`].
    pub(crate) fn new<D: Dispatcher<T>>(dispatcher: D) -> Self {
        let mut slot = Some(dispatcher);
        let demand = (&mut slot as &mut dyn Any)
            .downcast_mut::<Option<DemandDispatcher>>()
            .and_then(Option::take);
        match (demand, slot) {
            (Some(demand), _) => ChosenDispatcher::Demand(demand),
            (None, Some(other)) => ChosenDispatcher::Other(Box::new(other)),
            // The slot is emptied only when it held a demand dispatcher, taken above.
            (None, None) => unreachable!("a dispatcher taken from its slot is held"),
        }
    }

    pub(crate) fn subscribe(
        &mut self,
        subscriber: &Subscriber<'_>,
        deliveries: &mut Deliveries<T>,
    ) -> Result<usize, BoxError> {
        on_chosen!(self.subscribe(subscriber, deliveries))
    }

    pub(crate) fn cancel(&mut self, tag: SubscriptionTag, deliveries: &mut Deliveries<T>) -> usize {
        on_chosen!(self.cancel(tag, deliveries))
    }

    #[inline(always)]
    pub(crate) fn ask(
        &mut self,
        tag: SubscriptionTag,
        demand: usize,
        deliveries: &mut Deliveries<T>,
    ) -> usize {
        on_chosen!(self.ask(tag, demand, deliveries))
    }

    #[inline(always)]
    pub(crate) fn dispatch(&mut self, events: Vec<T>, deliveries: &mut Deliveries<T>) -> Vec<T> {
        on_chosen!(self.dispatch(events, deliveries))
    }

    /// The demand dispatcher's usual dispatch, without the delivery list (see
    /// [`DemandDispatcher::take_whole`]); `None` from any other dispatcher.
    #[inline(always)]
    pub(crate) fn take_whole(&mut self, count: usize) -> Option<SubscriptionTag> {
        match self {
            ChosenDispatcher::Demand(dispatcher) => dispatcher.take_whole(count),
            ChosenDispatcher::Other(_) => None,
        }
    }

    pub(crate) fn dispatch_buffered(
        &mut self,
        events: Vec<T>,
        deliveries: &mut Deliveries<T>,
    ) -> Vec<T> {
        on_chosen!(self.dispatch_buffered(events, deliveries))
    }

    /// Whether the dispatcher may hold events back while more mail waits, and so must
    /// hear when the mailbox is empty: any but the demand dispatcher, which never does.
    #[inline(always)]
    pub(crate) fn wants_idle(&self) -> bool {
        matches!(self, ChosenDispatcher::Other(_))
    }

    pub(crate) fn idle(&mut self, deliveries: &mut Deliveries<T>) {
        on_chosen!(self.idle(deliveries))
    }

    pub(crate) fn queue_marker(&mut self, marker: Marker, deliveries: &mut Deliveries<T>) {
        on_chosen!(self.queue_marker(marker, deliveries))
    }

    #[inline(always)]
    pub(crate) fn held(&self) -> usize {
        on_chosen!(self.held())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatcher::BroadcastDispatcher;

    #[test]
    fn the_demand_dispatcher_is_held_as_itself_and_any_other_behind_a_pointer() {
        let demand = DemandDispatcher::new().max_demand(7);
        assert!(matches!(
            ChosenDispatcher::<u32>::new(demand),
            ChosenDispatcher::Demand(held) if format!("{held:?}").contains("Some(7)")
        ));
        assert!(matches!(
            ChosenDispatcher::<u32>::new(BroadcastDispatcher::new()),
            ChosenDispatcher::Other(_)
        ));
    }
}
