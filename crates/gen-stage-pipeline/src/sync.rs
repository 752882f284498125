//! Locks that outlive a panic.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex whose data stays consistent whatever panicked while it was held
/// (every change under these locks is a single step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
