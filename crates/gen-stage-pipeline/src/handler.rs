//! The user's callbacks.

use std::future::Future;

use gen_stage::BoxError;

use crate::batch::{Batch, BatchOutcome};
use crate::message::Message;

/// Where a callback runs: which processor, of which layer, of which pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorContext {
    /// The pipeline's name.
    pub pipeline: std::sync::Arc<str>,
    /// The processors' layer, from 0
    /// ([`PipelineBuilder::then_processors`](crate::PipelineBuilder::then_processors)
    /// adds layers): `handle_message` runs once in each layer, and tells them apart by
    /// it.
    pub layer: usize,
    /// The processor's index in its layer, from 0 to the layer's concurrency.
    pub index: usize,
}

/// A pipeline's callbacks. One value serves every processor and batch processor at
/// once (through `&self`): its fields are the context the callbacks share (a database
/// pool, a client, settings), behind whatever synchronisation they need.
///
/// Only [`handle_message`](Handler::handle_message) is required. An error or a panic
/// in a callback fails exactly the messages the callback held, never the stage's other
/// messages, and the pipeline goes on.
///
/// ```
/// use gen_stage::BoxError;
/// use gen_stage_pipeline::{Batch, BatchOutcome, Handler, Message, ProcessorContext};
///
/// struct Orders;
///
/// impl Handler for Orders {
///     type Data = String;
///
///     async fn handle_message(&self, message: &mut Message<String>, _: &ProcessorContext) -> Result<(), BoxError> {
///         let amount: u64 = message.data().parse()?; // a bad order fails alone
///         message.set_data(format!("{amount} EUR"));
///         message.put_batcher("ledger");
///         Ok(())
///     }
///
///     async fn handle_batch(&self, batch: Batch<String>) -> BatchOutcome<String> {
///         // Write `batch.data()` out in one call, then:
///         batch.done()
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The messages' data.
    type Data: Send + 'static;

    /// Runs first on everything one processor received at once (for example, to load
    /// what the messages refer to in one query). All or nothing: an error or panic
    /// fails every message of the delivery, and none reaches `handle_message`.
    fn prepare_messages(
        &self,
        messages: &mut [Message<Self::Data>],
        ctx: &ProcessorContext,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (messages, ctx);
        async { Ok(()) }
    }

    /// Handles one message: change its data, route it to a batcher
    /// ([`Message::put_batcher`]), or fail it (return an error, or
    /// [`Message::fail`]). A message not routed to a batcher is acknowledged once this
    /// returns (see [`Message::put_batcher`] for the default batcher).
    fn handle_message(
        &self,
        message: &mut Message<Self::Data>,
        ctx: &ProcessorContext,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;

    /// Handles a batch a batcher made, and says which of its messages failed. A panic
    /// (or running past the batcher's `timeout`) fails every message of the batch,
    /// with [`Failure::Panic`](crate::Failure::Panic) or
    /// [`Failure::Timeout`](crate::Failure::Timeout).
    fn handle_batch(
        &self,
        batch: Batch<Self::Data>,
    ) -> impl Future<Output = BatchOutcome<Self::Data>> + Send {
        async { batch.done() }
    }

    /// Sees failed messages before they are settled: choose an outcome for some
    /// ([`Message::settle_as`]), or record them. The others end as the pipeline's
    /// [`RetryPolicy`](crate::RetryPolicy) says. A panic here leaves the outcomes to
    /// the policy.
    fn handle_failed(
        &self,
        messages: &mut [Message<Self::Data>],
    ) -> impl Future<Output = ()> + Send {
        let _ = messages;
        async {}
    }
}

/// A shared handler: keep an `Arc` of it to read its state while the pipeline runs.
impl<H: Handler> Handler for std::sync::Arc<H> {
    type Data = H::Data;

    fn prepare_messages(
        &self,
        messages: &mut [Message<Self::Data>],
        ctx: &ProcessorContext,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).prepare_messages(messages, ctx)
    }

    fn handle_message(
        &self,
        message: &mut Message<Self::Data>,
        ctx: &ProcessorContext,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        (**self).handle_message(message, ctx)
    }

    fn handle_batch(
        &self,
        batch: Batch<Self::Data>,
    ) -> impl Future<Output = BatchOutcome<Self::Data>> + Send {
        (**self).handle_batch(batch)
    }

    fn handle_failed(
        &self,
        messages: &mut [Message<Self::Data>],
    ) -> impl Future<Output = ()> + Send {
        (**self).handle_failed(messages)
    }
}
