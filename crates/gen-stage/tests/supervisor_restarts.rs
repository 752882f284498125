//! Supervision: restart types, the three strategies, restart intensity, nesting, shutdown
//! order and policies, start failures, and a supervised pipeline that re-subscribes by
//! name and loses exactly the events in the crashed consumer's hands (semantics §11
//! items 10, 11 and 13).

mod support;

use std::time::Duration;

use gen_stage::supervisor::{
    ChildSpec, Restart, Shutdown, Strategy, Supervisor, SupervisorError, SupervisorRef,
};
use gen_stage::{
    BoxError, Consumer, ConsumerContext, ConsumerRef, ExitReason, Init, NotAlive, ProducerRef,
    Registry, StartError, SubscribeOptions, SubscriptionTag,
};
use gen_stage_test::{Counter, Gate, ProducerRecord, Recorded, Script, ScriptedProducer, Watch};
use support::{opts, range, stops_normally, within};
use tokio::time::Instant;

// --- A worker that reports every start and stop ----------------------------------------

/// What every incarnation of every worker reported, in order.
#[derive(Clone, Default)]
struct Log {
    starts: Recorded<(&'static str, ConsumerRef<Worker>)>,
    terminated: Recorded<(&'static str, ExitReason)>,
    /// Each batch as it reached `handle_events`, before it was handled.
    seen: Recorded<Vec<u64>>,
    /// Each event handled to the end.
    handled: Recorded<u64>,
}

/// A consumer child: it logs its start (from `init`) and its `terminate`, panics on a
/// `Crash` message or on a batch holding a poison event, and can be made to fail or
/// ignore its start, or to hang in `terminate` until a gate opens.
#[derive(Clone)]
struct Worker {
    id: &'static str,
    log: Log,
    poison: Vec<u64>,
    /// `init` fails once this many starts of this worker were logged.
    fail_from: Option<usize>,
    ignore: bool,
    terminate_gate: Gate,
}

struct Crash;

impl Worker {
    fn with(mut self, change: impl FnOnce(&mut Self)) -> Self {
        change(&mut self);
        self
    }
}

impl Log {
    fn worker(&self, id: &'static str) -> Worker {
        Worker {
            id,
            log: self.clone(),
            poison: Vec::new(),
            fail_from: None,
            ignore: false,
            terminate_gate: Gate::opened(),
        }
    }

    fn start_ids(&self) -> Vec<&'static str> {
        self.starts.read(|s| s.iter().map(|(id, _)| *id).collect())
    }

    fn start_count(&self, id: &str) -> usize {
        self.starts
            .read(|s| s.iter().filter(|(i, _)| *i == id).count())
    }

    fn incarnations(&self, id: &str) -> Vec<ConsumerRef<Worker>> {
        let mut starts = self.starts.snapshot();
        starts.retain(|(i, _)| *i == id);
        starts.into_iter().map(|(_, w)| w).collect()
    }

    /// The latest incarnation of `id`.
    fn current(&self, id: &str) -> ConsumerRef<Worker> {
        self.incarnations(id).pop().expect("started")
    }

    async fn wait_starts(&self, count: usize) {
        within("starts", self.starts.wait_for_len(count)).await;
    }

    fn terminated_ids(&self) -> Vec<&'static str> {
        self.terminated
            .snapshot()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    fn terminate_reasons(&self) -> Vec<ExitReason> {
        self.terminated
            .snapshot()
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// Makes the current `id` panic and returns its exit reason.
    async fn crash(&self, id: &str) -> ExitReason {
        let worker = self.current(id);
        assert!(worker.cast(Crash).is_ok(), "{id} is not running");
        within("the crash", worker.stopped()).await
    }

    /// Crashes `id` and waits for the restart, the `starts`-th start in all.
    async fn crash_and_restart(&self, id: &str, starts: usize) {
        self.crash(id).await;
        self.wait_starts(starts).await;
    }
}

impl Consumer for Worker {
    type Event = u64;
    type Message = Crash;

    async fn init(&mut self, ctx: &mut ConsumerContext<'_, Self>) -> Result<Init, BoxError> {
        if self.ignore {
            return Ok(Init::Ignore);
        }
        if self
            .fail_from
            .is_some_and(|n| self.log.start_count(self.id) >= n)
        {
            return Err(format!("{} cannot start", self.id).into());
        }
        self.log.starts.push((self.id, ctx.stage_ref().clone()));
        Ok(Init::Start)
    }

    async fn handle_events(
        &mut self,
        events: Vec<u64>,
        _from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        self.log.seen.push(events.clone());
        if events.iter().any(|event| self.poison.contains(event)) {
            panic!("poisoned batch {events:?}");
        }
        self.log.handled.update(|handled| handled.extend(events));
        Ok(())
    }

    async fn handle_message(
        &mut self,
        _: Crash,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        panic!("{} crashed on request", self.id)
    }

    async fn terminate(&mut self, reason: &ExitReason) {
        self.log.terminated.push((self.id, reason.clone()));
        self.terminate_gate.pass().await;
    }
}

fn spec(worker: Worker) -> ChildSpec {
    ChildSpec::new(worker.id, move || {
        gen_stage::consumer(worker.clone()).start()
    })
}

/// A worker that subscribes to "numbers" by name at every start.
fn subscriber(worker: Worker, registry: &Registry, options: SubscribeOptions) -> ChildSpec {
    let registry = registry.clone();
    ChildSpec::new(worker.id, move || {
        gen_stage::consumer(worker.clone())
            .subscribe_to_name(&registry, "numbers", options.clone())
            .start()
    })
}

type Scripted = ProducerRef<ScriptedProducer<u64>>;

/// A scripted producer registered as "numbers"; every incarnation and its record.
fn scripted_producer(
    registry: &Registry,
) -> (ChildSpec, Recorded<(Scripted, Watch<ProducerRecord>)>) {
    let incarnations = Recorded::default();
    let (registry, all) = (registry.clone(), incarnations.clone());
    let spec = ChildSpec::new("producer", move || {
        let (registry, all) = (registry.clone(), all.clone());
        async move {
            let (script, record) = ScriptedProducer::new();
            let producer = gen_stage::producer(script)
                .name(&registry, "numbers")
                .start();
            let producer = producer.await?;
            all.push((producer.clone(), record));
            Ok(producer)
        }
    });
    (spec, incarnations)
}

/// A finite counter registered as "numbers", done once it has emitted `0..limit`.
fn counter(registry: &Registry, limit: u64) -> ChildSpec {
    let registry = registry.clone();
    let start = move || {
        let counter = Counter::new(0).limit(limit);
        gen_stage::producer(counter)
            .name(&registry, "numbers")
            .start()
    };
    ChildSpec::new("producer", start).restart(Restart::Transient)
}

/// Starts `supervisor` with `children`.
async fn supervise(supervisor: Supervisor, children: Vec<ChildSpec>) -> SupervisorRef {
    let supervisor = children.into_iter().fold(supervisor, Supervisor::child);
    supervisor.start().await.expect("the children start")
}

/// A default supervisor (one-for-one, 3 restarts in 5 s) over plain workers.
async fn workers(log: &Log, ids: &[&'static str]) -> SupervisorRef {
    let specs = ids.iter().map(|id| spec(log.worker(id))).collect();
    supervise(Supervisor::new(), specs).await
}

type Row = (String, bool, usize);

fn rows(expected: &[(&str, bool, usize)]) -> Vec<Row> {
    expected
        .iter()
        .map(|&(id, up, n)| (id.into(), up, n))
        .collect()
}

async fn children(supervisor: &SupervisorRef) -> Vec<Row> {
    let children = supervisor.which_children().await;
    let children = children.expect("the supervisor runs");
    children
        .into_iter()
        .map(|c| (c.id, c.running, c.restarts))
        .collect()
}

/// Asks the supervisor for its children until `done` holds: a stop the test caused is
/// handled once the supervisor gets to it.
async fn children_until(supervisor: &SupervisorRef, done: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    within("the supervisor's children", async {
        loop {
            let rows = children(supervisor).await;
            if done(&rows) {
                return rows;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
}

async fn assert_children(supervisor: &SupervisorRef, expected: &[(&str, bool, usize)]) {
    assert_eq!(children(supervisor).await, rows(expected));
}

async fn gives_up(supervisor: &SupervisorRef) {
    let reason = within("the supervisor gives up", supervisor.stopped()).await;
    assert_eq!(reason, ExitReason::TooManyRestarts);
}

fn panicked(id: &str) -> ExitReason {
    ExitReason::Panic(format!("{id} crashed on request").into())
}

// --- Restart types under one-for-one ---------------------------------------------------

#[tokio::test]
async fn one_for_one_restarts_only_the_crashed_child() {
    let log = Log::default();
    let sup = workers(&log, &["a", "b"]).await;
    let (a, b) = (log.current("a"), log.current("b"));

    assert_eq!(log.crash("a").await, panicked("a"));
    log.wait_starts(3).await;
    assert_eq!(log.start_ids(), ["a", "b", "a"]);
    assert_children(&sup, &[("a", true, 1), ("b", true, 0)]).await;
    assert_ne!(log.current("a").id(), a.id());
    assert!(b.is_alive());
    assert_eq!(log.terminated.snapshot(), [("a", panicked("a"))]);
}

#[tokio::test]
async fn a_permanent_child_is_restarted_after_a_normal_stop_too() {
    let log = Log::default();
    let sup = workers(&log, &["a"]).await;
    log.current("a").stop(ExitReason::Normal).await.unwrap();
    log.wait_starts(2).await;
    assert_children(&sup, &[("a", true, 1)]).await;
}

/// A supervisor over one transient worker "t", and the worker.
async fn transient(log: &Log) -> (SupervisorRef, ConsumerRef<Worker>) {
    let child = spec(log.worker("t")).restart(Restart::Transient);
    let sup = supervise(Supervisor::new(), vec![child]).await;
    (sup, log.current("t"))
}

#[tokio::test]
async fn a_transient_child_is_not_restarted_after_a_graceful_stop() {
    let maintenance = ExitReason::custom_shutdown("maintenance");
    for reason in [ExitReason::Normal, ExitReason::Shutdown, maintenance] {
        let log = Log::default();
        let (sup, t) = transient(&log).await;
        t.stop(reason.clone()).await.unwrap();
        let now = children_until(&sup, |c| !c[0].1).await;
        assert_eq!(now, rows(&[("t", false, 0)]), "after {reason:?}");
        assert_eq!(log.start_count("t"), 1, "after {reason:?}");
    }
}

#[tokio::test]
async fn a_transient_child_is_restarted_after_an_abnormal_stop() {
    for abnormal in [
        ExitReason::error("broken"),
        ExitReason::Killed,
        panicked("t"),
    ] {
        let log = Log::default();
        let (sup, t) = transient(&log).await;
        match abnormal {
            ExitReason::Killed => t.kill(),
            ExitReason::Panic(_) => assert!(t.cast(Crash).is_ok()),
            ref reason => t.stop(reason.clone()).await.unwrap(),
        }
        assert_eq!(t.stopped().await, abnormal);
        log.wait_starts(2).await;
        assert_children(&sup, &[("t", true, 1)]).await;
    }
}

#[tokio::test]
async fn a_temporary_child_is_never_restarted() {
    let log = Log::default();
    let temporary = |id| spec(log.worker(id)).restart(Restart::Temporary);
    let specs = vec![
        temporary("crashes"),
        temporary("ends"),
        spec(log.worker("stays")),
    ];
    let sup = supervise(Supervisor::new(), specs).await;
    log.crash("crashes").await;
    log.current("ends").stop(ExitReason::Normal).await.unwrap();
    let now = children_until(&sup, |c| !c[0].1 && !c[1].1).await;
    let expected = [
        ("crashes", false, 0),
        ("ends", false, 0),
        ("stays", true, 0),
    ];
    assert_eq!(now, rows(&expected));
    assert_eq!(log.start_ids(), ["crashes", "ends", "stays"]);
}

#[tokio::test]
async fn a_child_whose_start_is_ignored_is_left_not_running() {
    let log = Log::default();
    let ignored = log.worker("ignored").with(|w| w.ignore = true);
    let specs = vec![spec(ignored), spec(log.worker("b"))];
    let sup = supervise(Supervisor::new(), specs).await;
    assert_children(&sup, &[("ignored", false, 0), ("b", true, 0)]).await;
    assert_eq!(log.start_ids(), ["b"]);
}

// --- Rest-for-one and one-for-all ------------------------------------------------------

/// A rest-for-one supervisor over a scripted producer "numbers" and two consumers
/// subscribing to it by name; every producer started, with its record.
async fn rest_for_one_pipeline(
    log: &Log,
) -> (SupervisorRef, Recorded<(Scripted, Watch<ProducerRecord>)>) {
    let registry = Registry::new();
    let (producer, producers) = scripted_producer(&registry);
    let consumer = |id| subscriber(log.worker(id), &registry, opts(10, 5));
    let specs = vec![producer, consumer("c1"), consumer("c2")];
    let rest_for_one = Supervisor::new().strategy(Strategy::RestForOne);
    (supervise(rest_for_one, specs).await, producers)
}

#[tokio::test]
async fn rest_for_one_producer_crash_restarts_the_consumers_which_find_the_new_producer() {
    let log = Log::default();
    let (sup, producers) = rest_for_one_pipeline(&log).await;
    let (old, _) = producers.snapshot().pop().unwrap();
    old.cast(Script::Queue(vec![100, 101])).unwrap();
    within("events", log.handled.wait_for_len(2)).await;

    let broke = ExitReason::error("producer broke");
    old.cast(Script::Stop(broke)).unwrap();
    log.wait_starts(4).await;
    assert_children(
        &sup,
        &[("producer", true, 1), ("c1", true, 1), ("c2", true, 1)],
    )
    .await;
    assert_eq!(log.start_ids(), ["c1", "c2", "c1", "c2"]);

    // The new consumers subscribed, by name, to the new producer.
    let (new, new_record) = producers.snapshot().pop().unwrap();
    assert!(!old.is_alive() && new.id() != old.id());
    assert_eq!(new_record.read(|r| r.subscriptions.len()), 2);
    new.cast(Script::Queue(range(1, 5))).unwrap();
    within("events", log.handled.wait_for_len(6)).await;
    let mut handled = log.handled.snapshot();
    handled.sort_unstable();
    assert_eq!(handled, [1, 2, 3, 4, 100, 101]);
}

#[tokio::test]
async fn rest_for_one_consumer_crash_restarts_it_and_the_later_children_only() {
    let log = Log::default();
    let (sup, producers) = rest_for_one_pipeline(&log).await;

    log.crash_and_restart("c1", 4).await;
    assert_children(
        &sup,
        &[("producer", true, 0), ("c1", true, 1), ("c2", true, 1)],
    )
    .await;
    assert_eq!(log.start_ids(), ["c1", "c2", "c1", "c2"]);
    let stops = [("c1", panicked("c1")), ("c2", ExitReason::Shutdown)];
    assert_eq!(log.terminated.snapshot(), stops);

    let c1 = log.current("c1");
    log.crash_and_restart("c2", 5).await;
    assert_children(
        &sup,
        &[("producer", true, 0), ("c1", true, 1), ("c2", true, 2)],
    )
    .await;
    assert!(c1.is_alive());

    let all = producers.snapshot();
    assert_eq!(all.len(), 1, "the producer was never restarted");
    let seen = all[0].1.read(|r| (r.subscriptions.len(), r.cancels.len()));
    assert_eq!(seen, (5, 3));
}

#[tokio::test]
async fn one_for_all_restarts_every_child_except_temporary_ones() {
    let log = Log::default();
    let temporary = spec(log.worker("t")).restart(Restart::Temporary);
    let [a, b, c] = ["a", "b", "c"].map(|id| spec(log.worker(id)));
    let one_for_all = Supervisor::new().strategy(Strategy::OneForAll);
    let sup = supervise(one_for_all, vec![a, b, temporary, c]).await;

    log.crash_and_restart("b", 7).await;
    let expected = [
        ("a", true, 1),
        ("b", true, 1),
        ("t", false, 0),
        ("c", true, 1),
    ];
    assert_children(&sup, &expected).await;
    assert_eq!(log.start_ids(), ["a", "b", "t", "c", "a", "b", "c"]);
    // The others were stopped last first, then restarted in order.
    assert_eq!(log.terminated_ids(), ["b", "c", "t", "a"]);
    let reasons = log.terminate_reasons();
    assert!(reasons[1..].iter().all(|r| *r == ExitReason::Shutdown));
}

// --- A supervised pipeline that loses what the crashed consumer held -------------------

/// Runs a finite counter ("numbers", `0..limit`) and a transient worker "sink" that
/// subscribes to it by name and panics on a batch holding a `poison` event, until the
/// pipeline completes: the counter finishes and the sink, restarted after each crash,
/// stops with it. Returns the counter.
async fn run_pipeline(
    log: &Log,
    strategy: Strategy,
    limit: u64,
    poison: &[u64],
    options: SubscribeOptions,
) -> ProducerRef<Counter> {
    let registry = Registry::new();
    let sink = log.worker("sink").with(|w| w.poison = poison.to_vec());
    let sink = subscriber(sink, &registry, options).restart(Restart::Transient);
    let specs = vec![counter(&registry, limit), sink];
    let sup = supervise(Supervisor::new().strategy(strategy), specs).await;
    let producer: ProducerRef<Counter> = registry.lookup("numbers").expect("registered");

    stops_normally(&producer).await;
    log.wait_starts(poison.len() + 1).await;
    stops_normally(&log.current("sink")).await;
    let done = children_until(&sup, |c| !c[0].1 && !c[1].1).await;
    let restarts = poison.len();
    assert_eq!(
        done,
        rows(&[("producer", false, 0), ("sink", false, restarts)])
    );
    producer
}

#[tokio::test]
async fn supervised_pipeline_completes_losing_only_the_event_the_consumer_crashed_on() {
    let log = Log::default();
    // One event at a time: the only event in the consumer's hands is the one it panics on.
    let producer = run_pipeline(&log, Strategy::RestForOne, 10, &[3, 7], opts(1, 0)).await;

    // Every event was delivered once; all but the two poisoned ones were handled once.
    assert_eq!(log.seen.snapshot().concat(), range(0, 10));
    assert_eq!(log.handled.snapshot(), [0, 1, 2, 4, 5, 6, 8, 9]);
    let emitted = producer.stats().events_emitted;
    assert_eq!(emitted, 10);
    assert_eq!(
        emitted as usize - log.handled.len(),
        2,
        "the loss is counted"
    );
    let poisoned = |batch| ExitReason::Panic(format!("poisoned batch {batch}").into());
    let expected = [poisoned("[3]"), poisoned("[7]"), ExitReason::Normal];
    assert_eq!(log.terminate_reasons(), expected);
}

#[tokio::test]
async fn supervised_pipeline_loses_exactly_the_batch_in_the_crashed_consumers_hands() {
    let log = Log::default();
    // Batches of two, and no more asked until a batch is handled: a crash loses its batch.
    let producer = run_pipeline(&log, Strategy::OneForOne, 12, &[5, 8], opts(2, 0)).await;

    let batches: Vec<Vec<u64>> = (0..6).map(|i| range(2 * i, 2 * i + 2)).collect();
    assert_eq!(log.seen.snapshot(), batches);
    assert_eq!(log.handled.snapshot(), [0, 1, 2, 3, 6, 7, 10, 11]);
    // The three sinks received all twelve events; four were lost in crashes.
    let sinks = log.incarnations("sink");
    let received: u64 = sinks.iter().map(|s| s.stats().events_received).sum();
    assert_eq!(received, producer.stats().events_emitted);
    assert_eq!(received, 12);
    assert_eq!(received as usize - log.handled.len(), 4);
}

// --- Restart intensity -----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn past_the_default_intensity_the_supervisor_stops_with_every_child() {
    let log = Log::default();
    let sup = workers(&log, &["a", "b"]).await;
    for starts in 3..=5 {
        log.crash_and_restart("a", starts).await;
    }
    assert_children(&sup, &[("a", true, 3), ("b", true, 0)]).await;
    let b = log.current("b");

    log.crash("a").await; // the fourth within 5 seconds
    gives_up(&sup).await;
    assert_eq!(log.start_count("a"), 4);
    assert!(!b.is_alive());
    let last = log.terminated.snapshot().pop();
    assert_eq!(last, Some(("b", ExitReason::Shutdown)));
    assert!(!sup.is_alive());
    assert_eq!(sup.which_children().await, Err(NotAlive));
    assert_eq!(sup.stop(ExitReason::Shutdown).await, Err(NotAlive));
}

#[tokio::test(start_paused = true)]
async fn restarts_spread_over_more_than_the_period_are_allowed() {
    let log = Log::default();
    let two_in_ten = Supervisor::new().intensity(2, Duration::from_secs(10));
    let sup = supervise(two_in_ten, vec![spec(log.worker("a"))]).await;
    // Crashes 6 seconds apart: never more than two within 10 seconds.
    for starts in 2..=6 {
        log.crash_and_restart("a", starts).await;
        tokio::time::advance(Duration::from_secs(6)).await;
    }
    assert_children(&sup, &[("a", true, 5)]).await;
    // Two more at once: with the one 6 seconds ago, three within the period.
    log.crash_and_restart("a", 7).await;
    log.crash("a").await;
    gives_up(&sup).await;
}

#[tokio::test(start_paused = true)]
async fn a_child_that_cannot_be_restarted_exhausts_the_intensity() {
    let log = Log::default();
    let once = log.worker("once").with(|w| w.fail_from = Some(1));
    let sup = supervise(Supervisor::new(), vec![spec(once)]).await;
    log.crash("once").await;
    gives_up(&sup).await;
    assert_eq!(log.start_count("once"), 1);
}

// --- Nesting ---------------------------------------------------------------------------

/// An inner supervisor allowing one restart, over worker "w"; each one started is kept.
fn inner_supervisor(log: &Log, inners: &Recorded<SupervisorRef>) -> ChildSpec {
    let (log, inners) = (log.clone(), inners.clone());
    ChildSpec::new("inner", move || {
        let inner = Supervisor::new()
            .intensity(1, Duration::from_secs(5))
            .child(spec(log.worker("w")));
        let inners = inners.clone();
        async move {
            // A supervisor's start error is no `StartError`: wrap it.
            let started = inner.start().await;
            let inner = started.map_err(|error| StartError::Init(ExitReason::error(error)))?;
            inners.push(inner.clone());
            Ok(inner)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn an_inner_supervisor_that_gives_up_is_restarted_by_the_outer_one() {
    let (log, inners) = (Log::default(), Recorded::default());
    let inner = inner_supervisor(&log, &inners).shutdown(Shutdown::Wait);
    let outer = supervise(Supervisor::new(), vec![inner]).await;
    let first = inners.snapshot().pop().unwrap();

    log.crash_and_restart("w", 2).await; // allowed
    log.crash("w").await; // one too many for the inner supervisor
    gives_up(&first).await;
    log.wait_starts(3).await;
    assert_children(&outer, &[("inner", true, 1)]).await;
    let second = inners.snapshot().pop().unwrap();
    assert_children(&second, &[("w", true, 0)]).await;

    // Stopping the outer supervisor stops the inner one and its worker.
    let w = log.current("w");
    outer.stop(ExitReason::Shutdown).await.unwrap();
    assert!(!second.is_alive() && !w.is_alive());
}

#[tokio::test(start_paused = true)]
async fn killing_an_inner_supervisor_stops_its_children() {
    let (log, inners) = (Log::default(), Recorded::default());
    let inner = inner_supervisor(&log, &inners).shutdown(Shutdown::Kill);
    let outer = supervise(Supervisor::new(), vec![inner]).await;
    let w = log.current("w");
    outer.stop(ExitReason::Shutdown).await.unwrap();
    let inner = inners.snapshot().pop().unwrap();
    assert_eq!(inner.stopped().await, ExitReason::Killed);
    let reason = within("the orphan stops", w.stopped()).await;
    assert!(!reason.is_normal(), "the worker outlived its supervisor");
}

// --- Shutdown --------------------------------------------------------------------------

#[tokio::test]
async fn stop_stops_the_children_in_reverse_start_order() {
    let log = Log::default();
    let sup = workers(&log, &["a", "b", "c"]).await;
    let reason = ExitReason::custom_shutdown("maintenance");
    sup.stop(reason.clone()).await.expect("running");
    let expected = ["c", "b", "a"].map(|id| (id, ExitReason::Shutdown));
    assert_eq!(log.terminated.snapshot(), expected);
    assert_eq!(sup.stopped().await, reason);
    assert!(log.starts.snapshot().iter().all(|(_, w)| !w.is_alive()));
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_kills_a_child_that_does_not_stop_in_time() {
    let log = Log::default();
    let stuck = log
        .worker("stuck")
        .with(|w| w.terminate_gate = Gate::closed());
    let limit = Duration::from_secs(2);
    let stuck = spec(stuck).shutdown(Shutdown::Graceful(limit));
    let sup = supervise(Supervisor::new(), vec![spec(log.worker("first")), stuck]).await;
    let stuck = log.current("stuck");

    let began = Instant::now();
    within("the stop", sup.stop(ExitReason::Shutdown))
        .await
        .unwrap();
    let took = began.elapsed();
    assert!(
        took >= limit && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_eq!(stuck.stopped().await, ExitReason::Killed);
    // Its terminate began and never finished; the child before it stopped gracefully after.
    assert_eq!(log.terminated_ids(), ["stuck", "first"]);
    assert_eq!(
        log.terminate_reasons(),
        [ExitReason::Shutdown, ExitReason::Shutdown]
    );
}

#[tokio::test(start_paused = true)]
async fn kill_shutdown_aborts_the_child_at_once_without_terminate() {
    let log = Log::default();
    let brutal = spec(log.worker("brutal")).shutdown(Shutdown::Kill);
    let sup = supervise(Supervisor::new(), vec![spec(log.worker("gentle")), brutal]).await;
    let brutal = log.current("brutal");
    let began = Instant::now();
    sup.stop(ExitReason::Shutdown).await.unwrap();
    assert_eq!(began.elapsed(), Duration::ZERO);
    assert_eq!(brutal.stopped().await, ExitReason::Killed);
    assert_eq!(log.terminated_ids(), ["gentle"]);
}

#[tokio::test(start_paused = true)]
async fn wait_shutdown_waits_as_long_as_terminate_takes() {
    let log = Log::default();
    let gate = Gate::closed();
    let slow = log.worker("slow").with(|w| w.terminate_gate = gate.clone());
    let slow = spec(slow).shutdown(Shutdown::Wait);
    let sup = supervise(Supervisor::new(), vec![slow]).await;
    let slow = log.current("slow");
    let stopping = tokio::spawn({
        let sup = sup.clone();
        async move { sup.stop(ExitReason::Shutdown).await }
    });
    within("terminate begins", log.terminated.wait_for_len(1)).await;
    tokio::time::advance(Duration::from_secs(60)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(slow.is_alive() && !stopping.is_finished());

    gate.open(1);
    let stopped = within("the stop", stopping).await.unwrap();
    assert_eq!(stopped, Ok(()));
    assert_eq!(slow.stopped().await, ExitReason::Shutdown);
}

#[tokio::test]
async fn a_child_that_fails_to_start_fails_the_start_and_stops_the_started_ones() {
    let log = Log::default();
    let broken = log.worker("c").with(|w| w.fail_from = Some(0));
    let started = Supervisor::new()
        .child(spec(log.worker("a")))
        .child(spec(log.worker("b")))
        .child(spec(broken))
        .child(spec(log.worker("d")))
        .start()
        .await;
    let Err(SupervisorError::ChildStart { id, error }) = started else {
        panic!("the supervisor started: {started:?}");
    };
    assert_eq!(id, "c");
    let expected = ExitReason::error("c cannot start");
    let failed_init = matches!(error, StartError::Init(ref r) if *r == expected);
    assert!(failed_init, "{error:?}");
    assert_eq!(log.start_ids(), ["a", "b"]);
    let stops = ["b", "a"].map(|id| (id, ExitReason::Shutdown));
    assert_eq!(log.terminated.snapshot(), stops);
    assert!(log.starts.snapshot().iter().all(|(_, w)| !w.is_alive()));
}
