//! Producer and consumer stages with back-pressure, for tokio.
#![doc(test(attr(deny(warnings))))]

mod buffer;
mod builder;
mod context;
mod demand;
pub mod dispatcher;
mod error;
mod event_stream;
mod exit;
mod handle;
pub mod kind;
mod options;
mod protocol;
mod runtime;
mod source;
mod stage;
mod subscription;

pub use builder::{
    ConsumerBuilder, ProducerBuilder, ProducerConsumerBuilder, consumer, producer,
    producer_consumer,
};
pub use context::{ConsumerContext, Context, ProducerConsumerContext, ProducerContext};
pub use error::{
    CallError, NotAlive, OptionsError, SendError, StartError, SubscribeError, UnknownSubscription,
};
pub use event_stream::{EventStream, stream};
pub use exit::{BoxError, CancelMode, CancelReason, ExitReason};
pub use handle::{
    ConsumerRef, DEFAULT_CALL_TIMEOUT, ProducerConsumerRef, ProducerRef, ReplyTo, StageRef,
};
pub use options::{
    BufferKeep, BufferSize, DEFAULT_BUFFER_SIZE, DEFAULT_MAX_DEMAND, DemandMode, SubscribeOptions,
};
pub use source::{
    Exhausted, IterSource, OnCancel, Source, SourceProducer, StreamSource, from_iter, from_stream,
};
pub use stage::{AskMode, Consumer, Init, Producer, ProducerConsumer};
pub use subscription::{StageId, SubscriptionTag};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
