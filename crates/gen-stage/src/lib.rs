//! Producer and consumer stages with back-pressure, for tokio, after Elixir's GenStage.
//!
//! A *stage* is a tokio task that receives events, emits events, or both. Stages are
//! joined by *subscriptions*: a consumer subscribes to a producer, asks it for a number
//! of events (its *demand*), and the producer sends at most that many. Events flow
//! downstream in batches; demand flows upstream. A slow consumer therefore holds its
//! producer back instead of drowning in a queue, and memory stays bounded by the demand
//! and buffer settings, whatever the number of events.
//!
//! ```text
//! [A] -> [B] -> [C]
//! ```
//!
//! Here `A` is a [`Producer`], `B` a [`ProducerConsumer`] and `C` a [`Consumer`]. `C`
//! asks `B` for events, `B` asks `A` only as fast as `C` asks `B`, and `A` produces only
//! what was asked.
//!
//! Stages run on a tokio runtime with its time driver enabled (`#[tokio::main]`, or a
//! runtime built with `enable_time` or `enable_all`): calls, subscriptions and queries to
//! a stage wait with a timeout, and panic without a time driver, as every tokio timer
//! does.
//!
//! # Stages
//!
//! Implement one trait per kind of stage. The hook that defines the kind is required;
//! every other hook has a default.
//!
//! | trait | defining hook | receives | emits |
//! | --- | --- | --- | --- |
//! | [`Producer`] | `handle_demand(demand)` returns events | — | `Event` |
//! | [`ProducerConsumer`] | `handle_events(events)` returns events | `Input` | `Output` |
//! | [`Consumer`] | `handle_events(events)` | `Event` | — |
//!
//! Start a stage with [`producer`], [`producer_consumer`] or [`consumer`]: each returns
//! a builder whose `start` spawns the stage on the current tokio runtime and returns a
//! handle ([`ProducerRef`], [`ProducerConsumerRef`], [`ConsumerRef`]).
//!
//! ```
//! use gen_stage::{
//!     BoxError, Consumer, ConsumerContext, Producer, ProducerConsumer,
//!     ProducerConsumerContext, ProducerContext, SubscribeOptions, SubscriptionTag,
//! };
//!
//! /// [A]: 0, 1, 2, ... on demand.
//! struct Counter(u64);
//!
//! impl Producer for Counter {
//!     type Event = u64;
//!     type Message = ();
//!
//!     async fn handle_demand(&mut self, demand: usize, _: &mut ProducerContext<'_, Self>) -> Result<Vec<u64>, BoxError> {
//!         let events = (self.0..self.0 + demand as u64).collect();
//!         self.0 += demand as u64;
//!         Ok(events)
//!     }
//! }
//!
//! /// [B]: multiplies by two.
//! struct Doubler;
//!
//! impl ProducerConsumer for Doubler {
//!     type Input = u64;
//!     type Output = u64;
//!     type Message = ();
//!
//!     async fn handle_events(&mut self, events: Vec<u64>, _: SubscriptionTag, _: &mut ProducerConsumerContext<'_, Self>) -> Result<Vec<u64>, BoxError> {
//!         Ok(events.into_iter().map(|x| x * 2).collect())
//!     }
//! }
//!
//! /// [C]: sums what it receives, and stops after a while.
//! struct Summer(u64, usize);
//!
//! impl Consumer for Summer {
//!     type Event = u64;
//!     type Message = ();
//!
//!     async fn handle_events(&mut self, events: Vec<u64>, _: SubscriptionTag, ctx: &mut ConsumerContext<'_, Self>) -> Result<(), BoxError> {
//!         self.0 += events.iter().sum::<u64>();
//!         self.1 += events.len();
//!         if self.1 >= 10_000 {
//!             ctx.stop(gen_stage::ExitReason::Normal);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let a = gen_stage::producer(Counter(0)).start().await?;
//! let b = gen_stage::producer_consumer(Doubler)
//!     .subscribe_to(&a, SubscribeOptions::new())
//!     .start()
//!     .await?;
//! let c = gen_stage::consumer(Summer(0, 0))
//!     .subscribe_to(&b, SubscribeOptions::new().max_demand(100))
//!     .start()
//!     .await?;
//! assert!(c.stopped().await.is_normal());
//! # Ok(())
//! # }
//! ```
//!
//! Use stages for what they are for: back-pressure and concurrency between parts of a
//! program that run at different speeds. They are not a way to organise code: a chain
//! of plain function calls inside one stage is faster than a chain of stages.
//!
//! # Where things are
//!
//! The root holds what every program names: the stage traits and their contexts, the
//! functions that start stages, the handles, subscription options, exit reasons, the
//! [`Registry`], [`ReplyTo`] and [`TimerRef`]. The rest is in namespaces:
//!
//! | module | what is in it |
//! | --- | --- |
//! | [`builder`] | the builders that [`producer`], [`consumer`] and [`producer_consumer`] return; the buffer's settings and defaults |
//! | [`dispatcher`] | who gets which events: [`DemandDispatcher`](dispatcher::DemandDispatcher), [`BroadcastDispatcher`](dispatcher::BroadcastDispatcher), [`PartitionDispatcher`](dispatcher::PartitionDispatcher), and the trait to write your own |
//! | [`error`] | the error of each operation |
//! | [`kind`] | the markers that handles and contexts are generic over, for code generic over stages |
//! | [`source`] | producers made from an iterator, a `futures::Stream`, or a source that waits ([`Fetch`](source::Fetch)) |
//! | [`stats`] | what a stage reports about itself: counters, state, pending demand |
//! | [`stream`] | producers consumed as a `futures::Stream` |
//! | [`supervision`] | supervisors that restart stages, and the consumer that runs a task per event |
//!
//! # Demand
//!
//! Each subscription has a `max_demand` (default 1000) and a `min_demand` (default half
//! of it), set with [`SubscribeOptions`]. With automatic demand (the default) the
//! consumer asks `max_demand` as soon as it subscribes. Each delivery is cut into
//! batches of at most `max_demand - min_demand` events, one `handle_events` call each;
//! after the batch that brings the events still owed to `min_demand` or below, the
//! consumer asks for enough to owe `max_demand` again.
//!
//! With `max_demand` 1000 and `min_demand` 750, the consumer asks 1000; a delivery of
//! 1000 events reaches `handle_events` as four batches of 250, and after each of them
//! 250 more are asked. With the defaults (1000 and 500), two batches of 500 each
//! followed by an ask of 500.
//!
//! The window is also what sets the speed of stages whose work per event is small:
//! each round trip (a delivery out, an ask back) moves at most `max_demand` events, so
//! a wider window moves cheap events faster (`BENCHMARKS.md` in the repository has the
//! figures, against hand-written tokio channels). Raise `max_demand` for cheap events,
//! keep it low to bound what each consumer holds; when `handle_events` does real work
//! (I/O, parsing) that work dominates and the defaults serve.
//!
//! A consumer can take control instead: return [`AskMode::Manual`] from
//! `handle_producer_subscribed`, then ask with [`ConsumerContext::ask`] or
//! [`StageRef::ask`]. A producer never sends a subscription more events than were
//! asked for on it, whatever its dispatcher does.
//!
//! A producer's demand is *cumulative*: `handle_demand(n)` may return fewer than `n`
//! events, but it will not be asked again for the rest. Keep count of what is owed and
//! emit it later with [`ProducerContext::emit`], for example from `handle_message` when
//! new data arrives.
//!
//! A producer can start in [`DemandMode::Accumulate`]: it records demand and buffers
//! what it emits, but dispatches nothing, until switched to [`DemandMode::Forward`]
//! with [`StageRef::set_demand_mode`]. Use it to subscribe every consumer before the
//! first event goes out.
//!
//! # Dispatchers
//!
//! A producer's [`dispatcher`] decides which consumer gets which events:
//!
//! - [`DemandDispatcher`](dispatcher::DemandDispatcher) (the default) sends each batch
//!   to the consumer that has asked for the most, balancing the load;
//! - [`BroadcastDispatcher`](dispatcher::BroadcastDispatcher) sends every event to
//!   every consumer, at the pace of the slowest, each consumer optionally filtering
//!   with a [`Selector`](dispatcher::Selector);
//! - [`PartitionDispatcher`](dispatcher::PartitionDispatcher) sends each event to the
//!   consumers of its partition, chosen by a hash of the event.
//!
//! Dispatchers are synchronous state machines that implement
//! [`Dispatcher`](dispatcher::Dispatcher): write your own for other policies. Whatever
//! a dispatcher does, a consumer never receives more than it asked for.
//!
//! # Buffering
//!
//! Events a producer emits while no consumer has demand for them are kept in its
//! buffer, in order, and go out first when demand arrives (before `handle_demand` is
//! called). A producer keeps at most 10,000 events by default
//! ([`ProducerBuilder::buffer_size`]); when full it discards the oldest
//! ([`BufferKeep::Last`]) or the newest ([`BufferKeep::First`]). Every discard is
//! counted, reported to the `handle_discarded` hook and logged as a warning. A
//! producer-consumer's buffer is unbounded by default: it only ever holds what one
//! `handle_events` call returned beyond its consumers' demand.
//!
//! A message sent with [`StageRef::sync_info`] or [`StageRef::async_info`] reaches the
//! stage's `handle_message` only after every event buffered before it has gone out.
//!
//! # Messages
//!
//! Each stage has a `Message` type. [`StageRef::cast`] sends one; [`StageRef::call`]
//! sends one that carries a [`ReplyTo`] and waits for the reply, with a timeout. Replies
//! are typed per request:
//!
//! ```
//! use gen_stage::{BoxError, Producer, ProducerContext, ReplyTo};
//!
//! enum Request {
//!     /// Emit these events now.
//!     Push(Vec<String>),
//!     /// How many events were pushed so far?
//!     Count(ReplyTo<usize>),
//! }
//!
//! #[derive(Default)]
//! struct Queue(usize);
//!
//! impl Producer for Queue {
//!     type Event = String;
//!     type Message = Request;
//!
//!     async fn handle_demand(&mut self, _: usize, _: &mut ProducerContext<'_, Self>) -> Result<Vec<String>, BoxError> {
//!         Ok(Vec::new()) // events come from pushes; the buffer holds them until asked
//!     }
//!
//!     async fn handle_message(&mut self, request: Request, ctx: &mut ProducerContext<'_, Self>) -> Result<(), BoxError> {
//!         match request {
//!             Request::Push(events) => {
//!                 self.0 += events.len();
//!                 ctx.emit(events);
//!             }
//!             Request::Count(reply) => reply.send(self.0),
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let queue = gen_stage::producer(Queue::default()).start().await?;
//! queue.cast(Request::Push(vec!["a".into(), "b".into()])).map_err(|_| "queue stopped")?;
//! assert_eq!(queue.call(Request::Count).await?, 2);
//! assert_eq!(queue.estimate_buffered_count().await?, 2);
//! # Ok(())
//! # }
//! ```
//!
//! Events a hook emits with `ctx.emit` are dispatched at once, so they reach consumers
//! before any reply the hook sends after emitting them.
//!
//! ## What is bounded, and what is not
//!
//! - **Events** are bounded by demand: a consumer never holds more than it asked
//!   for, and a producer's buffer has a size (see Buffering).
//! - **User messages** (casts, calls, infos) are counted against the mailbox's
//!   capacity ([`ProducerBuilder::message_capacity`], [`DEFAULT_MESSAGE_CAPACITY`] by
//!   default). [`StageRef::try_cast`] gives the message back when the mailbox is full;
//!   [`StageRef::cast_when_room`], [`StageRef::call`] and [`StageRef::sync_info`]
//!   wait for room (calls and `sync_info` within their timeout).
//! - [`StageRef::cast`] and [`StageRef::async_info`] are **unbounded**: they never
//!   wait and never refuse. A loop of casts at a slower stage grows its mailbox
//!   without end; [`StageStats::queued_messages`] shows it.
//! - Protocol traffic (asks, subscriptions, stops, timer firings) is never refused and
//!   never waits.
//!
//! ## Timers
//!
//! [`Context::send_after`] hands a message to the stage's own `handle_message` after a
//! delay, and returns a [`TimerRef`] that [`Context::cancel_timer`] cancels: a
//! cancelled timer's message is never handled, even if it was due. Timers belong to the
//! stage: thousands cost no task, they never outlive it, and they follow tokio's clock
//! (`tokio::time::pause` drives them in tests).
//!
//! # Stopping and cancellation
//!
//! A stage stops when [`StageRef::stop`] is called, when a hook calls
//! [`Context::stop`], returns an error ([`ExitReason::Error`]) or panics
//! ([`ExitReason::Panic`]: the panic is contained to that stage), or when a subscription
//! ends and its [`CancelMode`] says so. Its `terminate` hook runs, and every peer is
//! told: producers see the consumer's subscription end, consumers see
//! [`CancelReason::Down`] with the reason. A consumer then stops with the same reason if
//! its subscription is [`CancelMode::Permanent`] (the default), stops only on abnormal
//! reasons if [`CancelMode::Transient`], and keeps running if
//! [`CancelMode::Temporary`]. So a finite producer that finishes normally winds down
//! the pipeline behind it.
//!
//! A producer-consumer whose producer ends first still delivers the output it had
//! buffered: the cancellation waits behind it, as info messages do. Otherwise, events
//! inside a stage when it stops (being handled, or buffered) are lost.
//!
//! ## Stops do not wait behind queued events
//!
//! A stop asked from outside ([`StageRef::stop`], a supervisor's shutdown) and the
//! abnormal end of a producer (for the consumers it stops) overtake the mailbox: the
//! stage finishes the batch in hand, runs `terminate` and stops. Events still queued,
//! or left in the delivery in hand, are not handed to `handle_events`; they are counted
//! in [`StageStats::events_unhandled`]. A producer's *normal* end is different: it
//! waits behind every event it sent, so a finite pipeline delivers every event.
//!
//! - [`StageRef::drain_and_stop`] stops gracefully: a stage cancels its subscriptions,
//!   handles what was delivered to it, lets its buffer go out, then stops; after its
//!   timeout it acts as `stop`.
//! - [`StageRef::stop_within`] and [`Shutdown::Graceful`] bound a stop: a hook that
//!   outlasts the limit is dropped, and `terminate` still runs,
//!   with [`ExitReason::ShutdownTimedOut`]. (OTP runs `terminate` only for processes
//!   that trap exits.)
//! - A call whose stage stops before replying fails with
//!   [`CallError::Stopped`], which carries the reason.
//!
//! ## Unreachable pipelines stop
//!
//! Stages joined by subscriptions keep running while user code can reach any one of
//! them: through a [`StageRef`] it holds (every clone counts), a name in a
//! [`Registry`] it holds, a [`Supervisor`], or an [`EventStream`] that consumes one
//! of them. Once none of them can be reached, every stage of that set stops with
//! [`ExitReason::Unreachable`] (a graceful reason), after the messages already queued
//! to it. So a pipeline whose handles were lost (an early return, a `?`) does not run
//! on unseen:
//!
//! - keep any one handle of `A -> B -> C` and the whole chain runs: keeping `C`'s, a
//!   finite `A` runs to completion; keeping `A`'s, `C` goes on consuming;
//! - drop every handle, and every stage of the chain stops;
//! - a stage's own handle ([`Context::stage_ref`]) does not count, but a clone of it
//!   does: a task of yours that holds a clone keeps the pipeline running, as it can
//!   still send it messages; so does a handle kept in a stage's state (a consumer
//!   that keeps its producer's handle). Keep a [`WeakStageRef`]
//!   ([`StageRef::downgrade`]) there instead, and upgrade it when needed.
//!
//! # Names and supervision
//!
//! A [`Registry`] names running stages: builders register a stage with `name` and
//! subscribe to one with `subscribe_to_name`, resolved each time the subscription is
//! made. A [`Supervisor`] starts stages from [`ChildSpec`]s and restarts them when
//! they stop, one for one, rest for one (pipelines) or all for one, within a restart
//! intensity; restarted consumers find restarted producers by name. See the
//! [`supervision`] module.
//!
//! [`ConsumerSupervisor`] is a consumer that runs one task per event, with
//! `max_demand` as the limit on tasks running at once, so that slow tasks hold the
//! producer back.
//!
//! # Streams
//!
//! [`source::from_iter`] and [`source::from_stream`] turn an iterator or a
//! `futures::Stream` into a producer that stops normally once exhausted;
//! [`stream::subscribe`] consumes producers as a `futures::Stream`, asking for more
//! only as the stream is pulled, one event at a time or, with [`EventStream::batches`],
//! a batch at a time. A task of its own polls the stream of a `from_stream` producer,
//! so that the producer keeps answering calls, subscriptions and stops while the
//! stream has nothing ready:
//!
//! ```
//! use futures::StreamExt;
//! use gen_stage::{ExitReason, SubscribeOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), gen_stage::BoxError> {
//! // One item, then nothing ever again.
//! let items = futures::stream::iter([7u64]).chain(futures::stream::pending());
//! let producer = gen_stage::source::from_stream(items).start().await?;
//! let mut events = gen_stage::stream::subscribe(&producer, SubscribeOptions::new())?;
//! assert_eq!(events.next().await, Some(7));
//! // The producer waits for the stream to serve the rest of the demand, and answers.
//! assert_eq!(producer.estimate_buffered_count().await?, 0);
//! producer.stop(ExitReason::Shutdown).await?;
//! assert_eq!(events.next().await, None);
//! assert_eq!(events.end_reason(), Some(&ExitReason::Shutdown));
//! # Ok(())
//! # }
//! ```
//!
//! A source that waits for its items, such as a broker client (a long poll, a claim of
//! rows), implements [`Fetch`]; [`source::from_fetch`] fetches from it on a task of its
//! own, for no more than the demand plus a prefetch, and gives back to the source what
//! it fetched and did not emit when it stops or drains. [`MemorySource`] is an
//! in-memory queue to fetch from, for tests.
//!
//! # Building on stages
//!
//! Layers above the core (a pipeline that acknowledges messages, a broker connector)
//! are written with the same public API as any user's code:
//! - [`Delegate`] runs another producer's hooks inside a stage of your own, which
//!   decides what becomes of the events (transform them, hold them to a rate, count
//!   them). The inner producer's timers, casts and stop reach the wrapper.
//! - [`AnyProducer`] holds a producer by the type of the events it emits, not by its
//!   own type, so that producers of different types live in one collection;
//!   [`Registry::lookup_producer`] finds one by name that way.
//! - A producer lets its consumers go with [`Context::cancel_consumer`], or once what
//!   it emitted before has gone out with [`Context::cancel_consumer_after_buffered`];
//!   [`Producer::prepare_for_draining`] tells it at once that its stage drains.
//! - [`StageRef::barrier`] returns once a stage has dealt with everything sent to it
//!   before, and [`supervision::SupervisorRef::watch`] streams a supervisor's child
//!   events: tests and drains wait for them instead of polling.
//!
//! # Errors
//!
//! Each operation has its own error type, an enum to match on. An error's message
//! includes the message of any error it wraps, so that printing it alone says what went
//! wrong; its `source()` is empty, so that a report printing the whole chain (anyhow's
//! `{:#}`) shows each message once. The wrapped errors are fields of the variants.
//!
//! # Differences from GenStage
//!
//! Behaviours that surprise GenStage users are chosen the way a user would expect, and
//! documented where they apply:
//!
//! - A consumer that cancels its own subscription keeps running, whatever the mode.
//! - [`StageRef::ask`] from another task never reroutes events to that task.
//! - A subscription a producer refuses (its hook or its dispatcher) is returned as
//!   [`SubscribeError::Rejected`] and never stops the consumer or crashes the producer.
//! - [`StageRef::subscribe_to`] waits for the producer's answer, and a producer that is
//!   not alive is an error rather than a later exit.
//! - `buffer_size(0)` is valid: the producer keeps nothing, and counts every discard.
//! - A producer-consumer never drops its buffered output because its producer
//!   finished; a finite pipeline delivers every event. A producer that fails (or
//!   finishes once no consumer is left to take the output) is handled at once, as in
//!   GenStage: a crash upstream stops a permanent subscriber whatever it buffers.
//! - Events emitted while accumulating demand are kept within the buffer's size (and
//!   its discards are counted), not in an unbounded side list.
//! - Buffered events go out when a cancellation frees demand for them (broadcast), and
//!   new events never overtake them; the demand asked upstream counts what the buffer
//!   already holds, so a broadcast with uneven consumers never stalls.
//! - Consumers cannot emit events: their context has no `emit`.
//! - Subscribing a producer-only stage to another is a compile error.
//!
//! [`BufferKeep::First`]: builder::BufferKeep::First
//! [`BufferKeep::Last`]: builder::BufferKeep::Last
//! [`CallError::Stopped`]: error::CallError::Stopped
//! [`ChildSpec`]: supervision::ChildSpec
//! [`ConsumerSupervisor`]: supervision::ConsumerSupervisor
//! [`DEFAULT_MESSAGE_CAPACITY`]: builder::DEFAULT_MESSAGE_CAPACITY
//! [`EventStream`]: stream::EventStream
//! [`EventStream::batches`]: stream::EventStream::batches
//! [`Fetch`]: source::Fetch
//! [`MemorySource`]: source::MemorySource
//! [`ProducerBuilder::buffer_size`]: builder::Builder::buffer_size
//! [`ProducerBuilder::message_capacity`]: builder::Builder::message_capacity
//! [`Shutdown::Graceful`]: supervision::Shutdown::Graceful
//! [`StageStats::events_unhandled`]: stats::StageStats::events_unhandled
//! [`StageStats::queued_messages`]: stats::StageStats::queued_messages
//! [`SubscribeError::Rejected`]: error::SubscribeError::Rejected
//! [`Supervisor`]: supervision::Supervisor
#![doc(test(attr(deny(warnings))))]

// The modules, in layers: each imports only from the layers below it (a folder's own
// file may also name its children). `tests/module_layers.rs` fails on any cycle.
//   ground   subscription, exit, kind, demand, stats, timers, entry_bound, sync
//   1        error, lifecycle, exit_watch
//   2        options, reachability, reply
//   3        wire (envelopes by the half they are for, addresses, parcels, ports),
//            buffer, dispatcher
//   4        upstream, the dispatchers, runtime::consumer_side (streams use it too),
//            runtime::producer_side::{outbox, held}
//   5        handle, event_stream
//   6        context, any_producer, weak_handle
//   7        stage, registry, runtime::{producer_side, control}
//   8        runtime (the loops), delegate, supervision
//   9        builder, then source
//   10       stream, bench_support (re-exports and wrappers; nothing imports them)
//
// The public namespaces (`pub mod`) are `builder`, `dispatcher`, `error`, `kind`,
// `source`, `stats`, `stream` and `supervision`; every other module is private, and
// what users need of it is re-exported below or from a namespace.

mod any_producer;
mod buffer;
pub mod builder;
mod context;
mod delegate;
mod demand;
pub mod dispatcher;
mod entry_bound;
pub mod error;
mod event_stream;
mod exit;
mod exit_watch;
mod handle;
pub mod kind;
mod lifecycle;
mod options;
mod reachability;
mod registry;
mod reply;
mod runtime;
pub mod source;
mod stage;
pub mod stats;
pub mod stream;
mod subscription;
pub mod supervision;
mod sync;
mod timers;
mod upstream;
mod weak_handle;
mod wire;

#[cfg(feature = "bench-internals")]
pub mod bench_support;

// The root: 32 names. The stages and their contexts,
pub use context::{ConsumerContext, Context, ProducerConsumerContext, ProducerContext};
pub use stage::{Consumer, Init, Producer, ProducerConsumer};
// how to start them (defined in `builder`, and shown here too),
#[doc(inline)]
pub use builder::{consumer, producer, producer_consumer};
// the handles to them, and what they wait for at most by default,
pub use any_producer::AnyProducer;
pub use handle::{ConsumerRef, DEFAULT_CALL_TIMEOUT, ProducerConsumerRef, ProducerRef, StageRef};
pub use upstream::Upstream;
pub use weak_handle::WeakStageRef;
// a stage that runs another's hooks,
pub use delegate::Delegate;
// subscriptions and demand,
pub use options::{DemandMode, SubscribeOptions};
pub use subscription::{AskMode, StageId, SubscriptionTag};
// exits and cancellations,
pub use exit::{BoxError, CancelMode, CancelReason, ExitReason};
// and names, replies and timers.
pub use registry::Registry;
pub use reply::ReplyTo;
pub use timers::TimerRef;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
