//! Gates: hold a stage inside a hook until the test opens them.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Counts passes: each `pass().await` takes one, waiting until the test grants it with
/// [`Gate::open`]. A gate made with [`Gate::opened`] never holds anyone.
#[derive(Clone, Debug)]
pub struct Gate {
    permits: Arc<Semaphore>,
}

impl Default for Gate {
    fn default() -> Self {
        Self::closed()
    }
}

impl Gate {
    /// A gate that holds everyone until opened.
    pub fn closed() -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(0)),
        }
    }

    /// A gate that lets everyone through.
    pub fn opened() -> Self {
        let gate = Self::closed();
        gate.permits.close();
        gate
    }

    /// Lets `count` more passes through.
    pub fn open(&self, count: usize) {
        self.permits.add_permits(count);
    }

    /// Lets everyone through from now on.
    pub fn open_for_good(&self) {
        self.permits.close();
    }

    /// Waits for a pass.
    pub async fn pass(&self) {
        if let Ok(permit) = self.permits.acquire().await {
            permit.forget();
        }
    }
}
