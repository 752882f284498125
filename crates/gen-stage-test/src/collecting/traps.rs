//! Traps: what a collecting consumer does to a batch that holds a chosen event.

use std::sync::Arc;

use gen_stage::ExitReason;

/// What a trap does to the batch that holds a matching event.
pub(super) enum Sprung {
    Panic(String),
    Fail(String),
    Stop(ExitReason),
}

/// Looks at one event: `Some` when the trap springs on it. Shared by the clones of a
/// consumer.
pub(super) type Trap<T> = Arc<dyn Fn(&T) -> Option<Sprung> + Send + Sync>;

/// What the first trap that matches an event of `events` does, if one does.
pub(super) fn spring<T>(traps: &[Trap<T>], events: &[T]) -> Option<Sprung> {
    events
        .iter()
        .find_map(|event| traps.iter().find_map(|trap| trap(event)))
}
