//! Supervision shutdown: nested supervisors (restarted, stopped and killed with their
//! children), shutdown order and policies, and a start failure stopping the children
//! already started.

use std::time::Duration;

use crate::children::{
    Workers, assert_children, crash, crash_and_restart, current, exit_names, exit_reasons, exits,
    gives_up, none_alive, spec, start_names, supervise, supervise_workers, worker,
};
use crate::support::within;
use futures::future::BoxFuture;
use gen_stage::ExitReason;
use gen_stage::error::StartError;
use gen_stage::supervision::{
    ChildSpec, Shutdown, Supervised, Supervisor, SupervisorError, SupervisorRef,
};
use gen_stage_test::{Gate, Recorded};
use tokio::time::Instant;

// --- Nesting ---------------------------------------------------------------------------

/// An inner supervisor allowing one restart, over worker "w"; each one started is kept.
fn inner_supervisor(log: &Workers, inners: &Recorded<SupervisorRef>) -> ChildSpec {
    let (w, inners) = (worker(log, "w"), inners.clone());
    ChildSpec::new("inner", move || {
        let inner = Supervisor::new()
            .intensity(1, Duration::from_secs(5))
            .child(spec(w.clone()));
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
    let (log, inners) = (Workers::default(), Recorded::default());
    let inner = inner_supervisor(&log, &inners).shutdown(Shutdown::Wait);
    let outer = supervise(Supervisor::new(), vec![inner]).await;
    let first = inners.snapshot().pop().unwrap();

    crash_and_restart(&log, "w", 2).await; // allowed
    crash(&log, "w").await; // one too many for the inner supervisor
    gives_up(&first).await;
    log.wait_for_starts(3).await;
    assert_children(&outer, &[("inner", true, 1)]).await;
    let second = inners.snapshot().pop().unwrap();
    assert_children(&second, &[("w", true, 0)]).await;

    // Stopping the outer supervisor stops the inner one and its worker.
    let w = current(&log, "w");
    outer.stop(ExitReason::Shutdown).await.unwrap();
    assert!(!second.is_alive() && !w.is_alive());
}

#[tokio::test(start_paused = true)]
async fn killing_an_inner_supervisor_stops_its_children() {
    let (log, inners) = (Workers::default(), Recorded::default());
    let inner = inner_supervisor(&log, &inners).shutdown(Shutdown::Kill);
    let outer = supervise(Supervisor::new(), vec![inner]).await;
    let w = current(&log, "w");
    outer.stop(ExitReason::Shutdown).await.unwrap();
    let inner = inners.snapshot().pop().unwrap();
    assert_eq!(inner.stopped().await, ExitReason::Killed);
    let reason = within("the orphan stops", w.stopped()).await;
    assert!(!reason.is_normal(), "the worker outlived its supervisor");
}

// --- Shutdown --------------------------------------------------------------------------

#[tokio::test]
async fn stop_stops_the_children_in_reverse_start_order() {
    let log = Workers::default();
    let sup = supervise_workers(&log, &["a", "b", "c"]).await;
    let reason = ExitReason::custom_shutdown("maintenance");
    sup.stop(reason.clone()).await.expect("running");
    let expected = ["c", "b", "a"].map(|id| (id, ExitReason::Shutdown));
    assert_eq!(exits(&log), expected);
    assert_eq!(sup.stopped().await, reason);
    assert!(none_alive(&log));
}

#[tokio::test]
async fn dropping_the_last_handle_shuts_the_supervisor_and_its_children_down() {
    let log = Workers::default();
    let sup = supervise_workers(&log, &["a", "b"]).await;
    let worker = current(&log, "a");
    drop(sup);
    assert_eq!(
        within("the worker", worker.stopped()).await,
        ExitReason::Shutdown
    );
    let expected = ["b", "a"].map(|id| (id, ExitReason::Shutdown));
    log.wait_until(|r| r.exits.len() >= 2).await;
    assert_eq!(exits(&log), expected);
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_kills_a_child_that_does_not_stop_in_time() {
    let log = Workers::default();
    let stuck = worker(&log, "stuck").terminate_gated(Gate::closed());
    let limit = Duration::from_secs(2);
    let stuck = spec(stuck).shutdown(Shutdown::Graceful(limit));
    let sup = supervise(Supervisor::new(), vec![spec(worker(&log, "first")), stuck]).await;
    let stuck = current(&log, "stuck");

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
    assert_eq!(exit_names(&log), ["stuck", "first"]);
    assert_eq!(
        exit_reasons(&log),
        [ExitReason::Shutdown, ExitReason::Shutdown]
    );
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_killed_while_it_stops_a_child_kills_that_child() {
    let log = Workers::default();
    let stuck = worker(&log, "stuck").terminate_gated(Gate::closed());
    let inner = ChildSpec::new("inner", move || {
        let stuck = spec(stuck.clone()).shutdown(Shutdown::Graceful(Duration::from_secs(60)));
        let inner = Supervisor::new().child(stuck);
        async move {
            let started = inner.start().await;
            started.map_err(|error| StartError::Init(ExitReason::error(error)))
        }
    })
    .shutdown(Shutdown::Graceful(Duration::from_secs(1)));
    let outer = supervise(Supervisor::new(), vec![inner]).await;
    let stuck = current(&log, "stuck");

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
    let log = Workers::default();
    let brutal = spec(worker(&log, "brutal")).shutdown(Shutdown::Kill);
    let sup = supervise(
        Supervisor::new(),
        vec![spec(worker(&log, "gentle")), brutal],
    )
    .await;
    let brutal = current(&log, "brutal");
    let began = Instant::now();
    sup.stop(ExitReason::Shutdown).await.unwrap();
    assert_eq!(began.elapsed(), Duration::ZERO);
    assert_eq!(brutal.stopped().await, ExitReason::Killed);
    assert_eq!(exit_names(&log), ["gentle"]);
}

#[tokio::test(start_paused = true)]
async fn wait_shutdown_waits_as_long_as_terminate_takes() {
    let log = Workers::default();
    let gate = Gate::closed();
    let slow = worker(&log, "slow").terminate_gated(gate.clone());
    let slow = spec(slow).shutdown(Shutdown::Wait);
    let sup = supervise(Supervisor::new(), vec![slow]).await;
    let slow = current(&log, "slow");
    let stopping = tokio::spawn({
        let sup = sup.clone();
        async move { sup.stop(ExitReason::Shutdown).await }
    });
    let began = log.wait_until(|r| !r.exits.is_empty());
    within("terminate begins", began).await;
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
    let log = Workers::default();
    let broken = worker(&log, "c").fails_to_start_from(0);
    let started = Supervisor::new()
        .child(spec(worker(&log, "a")))
        .child(spec(worker(&log, "b")))
        .child(spec(broken))
        .child(spec(worker(&log, "d")))
        .start()
        .await;
    let Err(SupervisorError::ChildStart { id, error }) = started else {
        panic!("the supervisor started: {started:?}");
    };
    assert_eq!(id, "c");
    let expected = ExitReason::error("fails to start");
    let failed_init = matches!(error, StartError::Init(ref r) if *r == expected);
    assert!(failed_init, "{error:?}");
    assert_eq!(start_names(&log), ["a", "b"]);
    let stops = ["b", "a"].map(|id| (id, ExitReason::Shutdown));
    assert_eq!(exits(&log), stops);
    assert!(none_alive(&log));
}

// --- Bad specs and a busy supervisor ---------------------------------------------------

#[tokio::test]
async fn two_children_with_one_id_are_refused_before_anything_starts() {
    let log = Workers::default();
    let started = Supervisor::new()
        .child(spec(worker(&log, "a")))
        .child(spec(worker(&log, "b")))
        .child(spec(worker(&log, "a")))
        .start()
        .await;
    assert!(
        matches!(&started, Err(SupervisorError::DuplicateChildId(id)) if id == "a"),
        "{:?}",
        started.err()
    );
    assert!(
        start_names(&log).is_empty(),
        "started {:?}",
        start_names(&log)
    );
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
