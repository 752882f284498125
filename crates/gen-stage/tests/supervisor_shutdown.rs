//! Supervision shutdown: nested supervisors (restarted, stopped and killed with their
//! children), shutdown order and policies, and a start failure stopping the children
//! already started.

mod support;

use std::time::Duration;

use futures::future::BoxFuture;
use gen_stage::ExitReason;
use gen_stage::error::StartError;
use gen_stage::supervision::{
    ChildSpec, Shutdown, Supervised, Supervisor, SupervisorError, SupervisorRef,
};
use gen_stage_test::{Gate, Recorded};
use support::within;
use support::workers::{Log, assert_children, gives_up, spec, supervise, workers};
use tokio::time::Instant;

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

#[tokio::test]
async fn dropping_the_last_handle_shuts_the_supervisor_and_its_children_down() {
    let log = Log::default();
    let sup = workers(&log, &["a", "b"]).await;
    let worker = log.current("a");
    drop(sup);
    assert_eq!(
        within("the worker", worker.stopped()).await,
        ExitReason::Shutdown
    );
    let expected = ["b", "a"].map(|id| (id, ExitReason::Shutdown));
    log.terminated.wait_for_len(2).await;
    assert_eq!(log.terminated.snapshot(), expected);
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
async fn a_supervisor_killed_while_it_stops_a_child_kills_that_child() {
    let log = Log::default();
    let inner_log = log.clone();
    let inner = ChildSpec::new("inner", move || {
        let stuck = inner_log
            .worker("stuck")
            .with(|w| w.terminate_gate = Gate::closed());
        let stuck = spec(stuck).shutdown(Shutdown::Graceful(Duration::from_secs(60)));
        let inner = Supervisor::new().child(stuck);
        async move {
            let started = inner.start().await;
            started.map_err(|error| StartError::Init(ExitReason::error(error)))
        }
    })
    .shutdown(Shutdown::Graceful(Duration::from_secs(1)));
    let outer = supervise(Supervisor::new(), vec![inner]).await;
    let stuck = log.current("stuck");

    within("the stop", outer.stop(ExitReason::Shutdown))
        .await
        .unwrap();
    // The inner supervisor was given a second, then killed while it still waited for
    // "stuck" to finish `terminate`: the worker goes with it, not left unsupervised.
    assert_eq!(
        within("the stuck worker stops", stuck.stopped()).await,
        ExitReason::Killed
    );
}

/// A child that takes its time to go once killed: it is gone when its gate opens.
struct SlowToDie(Gate);

impl Supervised for SlowToDie {
    fn stopped(&self) -> BoxFuture<'static, ExitReason> {
        let gate = self.0.clone();
        Box::pin(async move {
            gate.pass().await;
            ExitReason::Killed
        })
    }

    fn request_stop(&self, _: ExitReason) {}

    fn kill(&self) {}
}

#[tokio::test(start_paused = true)]
async fn a_killed_supervisor_reports_stopped_once_its_children_are_gone() {
    let gate = Gate::closed();
    let child = gate.clone();
    let slow = ChildSpec::new("slow", move || {
        let child = child.clone();
        async move { Ok(SlowToDie(child)) }
    });
    let sup = supervise(Supervisor::new(), vec![slow]).await;
    sup.kill();
    // Its child (holding a name, say) is still there: the supervisor is not stopped yet.
    let early = tokio::time::timeout(Duration::from_secs(3600), sup.stopped()).await;
    assert!(
        early.is_err(),
        "reported stopped while its child was still there"
    );
    gate.open_for_good();
    assert_eq!(within("stopped", sup.stopped()).await, ExitReason::Killed);
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

// --- Bad specs and a busy supervisor ---------------------------------------------------

#[tokio::test]
async fn two_children_with_one_id_are_refused_before_anything_starts() {
    let log = Log::default();
    let started = Supervisor::new()
        .child(spec(log.worker("a")))
        .child(spec(log.worker("b")))
        .child(spec(log.worker("a")))
        .start()
        .await;
    assert!(
        matches!(&started, Err(SupervisorError::DuplicateChildId(id)) if id == "a"),
        "{:?}",
        started.err()
    );
    assert!(log.start_ids().is_empty(), "started {:?}", log.start_ids());
}

#[tokio::test(start_paused = true)]
async fn which_children_times_out_while_a_restart_has_not_finished_starting() {
    use gen_stage::ProducerRef;
    use gen_stage::error::CallError;
    use gen_stage_test::Counter;

    let gate = Gate::closed();
    let starts = Recorded::<ProducerRef<Counter>>::default();
    let (opened, all) = (gate.clone(), starts.clone());
    let child = ChildSpec::new("slow", move || {
        let (gate, all) = (opened.clone(), all.clone());
        async move {
            // Every start after the first waits for the gate.
            if !all.is_empty() {
                gate.pass().await;
            }
            let producer = gen_stage::producer(Counter::new(0)).start().await?;
            all.push(producer.clone());
            Ok(producer)
        }
    });
    let sup = supervise(Supervisor::new(), vec![child]).await;
    let first = starts.snapshot().pop().unwrap();
    first.stop(ExitReason::error("crash")).await.unwrap();

    assert_eq!(sup.which_children().await, Err(CallError::Timeout));
    gate.open_for_good();
    starts.wait_for_len(2).await;
    let children = sup.which_children().await.expect("it answers again");
    assert_eq!((children[0].running, children[0].restarts), (true, 1));
}
