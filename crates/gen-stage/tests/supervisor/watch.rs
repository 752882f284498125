//! Watching a `Supervisor`: its children's starts, exits and restarts awaited as
//! events (no polling of `which_children`), a watcher that falls behind told what it
//! missed without holding the supervisor back, and the stream's end with the
//! supervisor's.

use std::time::Duration;

use crate::children::{Workers, crash, crashed, current, spec, supervise, worker};
use crate::support::within;
use futures::FutureExt;
use futures::future::BoxFuture;
use gen_stage::ExitReason;
use gen_stage::error::StartError;
use gen_stage::supervision::{
    ChildEvent, ChildEvents, ChildSpec, Missed, Strategy, Supervised, Supervisor,
};

fn started(id: &str) -> ChildEvent {
    ChildEvent::Started { id: id.into() }
}

fn exited(id: &str, reason: ExitReason) -> ChildEvent {
    ChildEvent::Exited {
        id: id.into(),
        reason,
    }
}

fn restarted(id: &str) -> ChildEvent {
    ChildEvent::Restarted { id: id.into() }
}

fn supervisor_stopped(reason: ExitReason) -> ChildEvent {
    ChildEvent::SupervisorStopped { reason }
}

/// The next event, which must come.
async fn next(events: &mut ChildEvents) -> Result<ChildEvent, Missed> {
    within("the next child event", events.next())
        .await
        .expect("the stream has not ended")
}

/// Every event left, up to the end of the stream.
async fn rest(events: &mut ChildEvents) -> Vec<Result<ChildEvent, Missed>> {
    let mut all = Vec::new();
    while let Some(event) = within("the end of the stream", events.next()).await {
        all.push(event);
    }
    all
}

#[tokio::test]
async fn a_failing_child_is_seen_started_then_exited_with_its_reason_then_restarted() {
    let log = Workers::default();
    let supervisor = Supervisor::new().child(spec(worker(&log, "a")));
    let mut events = supervisor.watch();
    let sup = supervisor.start().await.expect("starts");
    assert_eq!(next(&mut events).await, Ok(started("a")));

    crash(&log, "a").await;
    assert_eq!(next(&mut events).await, Ok(exited("a", crashed())));
    assert_eq!(next(&mut events).await, Ok(restarted("a")));
    // The event came once the new incarnation was running.
    assert_eq!(log.incarnations("a").len(), 2);
    assert!(current(&log, "a").is_alive());
    sup.stop(ExitReason::Shutdown).await.expect("stops");
}

#[tokio::test]
async fn a_restart_strategy_shows_the_siblings_it_stops_and_restarts() {
    let log = Workers::default();
    let children = ["a", "b", "c"].map(|id| spec(worker(&log, id))).to_vec();
    let sup = supervise(Supervisor::new().strategy(Strategy::RestForOne), children).await;
    let mut events = sup.watch();
    crash(&log, "b").await;
    // b's exit, c stopped for the restart, then both started again in order.
    assert_eq!(next(&mut events).await, Ok(exited("b", crashed())));
    assert_eq!(
        next(&mut events).await,
        Ok(exited("c", ExitReason::Shutdown))
    );
    assert_eq!(next(&mut events).await, Ok(restarted("b")));
    assert_eq!(next(&mut events).await, Ok(restarted("c")));
    sup.stop(ExitReason::Shutdown).await.expect("stops");
}

#[tokio::test]
async fn a_watcher_made_after_events_sees_only_later_ones() {
    let log = Workers::default();
    let sup = supervise(Supervisor::new(), vec![spec(worker(&log, "a"))]).await;
    // Made after the start: the first thing it sees is the crash, not the start.
    let mut early = sup.watch();
    crash(&log, "a").await;
    assert_eq!(next(&mut early).await, Ok(exited("a", crashed())));
    assert_eq!(next(&mut early).await, Ok(restarted("a")));

    let mut late = sup.watch();
    sup.stop(ExitReason::Shutdown).await.expect("stops");
    let last = vec![
        Ok(exited("a", ExitReason::Shutdown)),
        Ok(supervisor_stopped(ExitReason::Shutdown)),
    ];
    assert_eq!(rest(&mut late).await, last);
    assert_eq!(rest(&mut early).await, last);
}

#[tokio::test]
async fn the_stream_ends_when_the_supervisor_stops_after_its_childrens_exits() {
    let log = Workers::default();
    let children = vec![spec(worker(&log, "a")), spec(worker(&log, "b"))];
    let sup = supervise(Supervisor::new(), children).await;
    let mut events = sup.watch();
    sup.stop(ExitReason::Shutdown).await.expect("stops");
    assert_eq!(
        rest(&mut events).await,
        vec![
            Ok(exited("b", ExitReason::Shutdown)),
            Ok(exited("a", ExitReason::Shutdown)),
            Ok(supervisor_stopped(ExitReason::Shutdown)),
        ]
    );
    // A watcher of a supervisor that has stopped ends at once.
    assert_eq!(sup.watch().next().await, None);
}

#[tokio::test]
async fn a_killed_supervisor_tells_its_childrens_exits_before_its_stop_is_published() {
    let log = Workers::default();
    let sup = supervise(Supervisor::new(), vec![spec(worker(&log, "a"))]).await;
    let mut events = sup.watch();
    Supervised::kill(&sup);
    assert_eq!(within("the kill", sup.stopped()).await, ExitReason::Killed);
    // Everything was sent before the stop was published: nothing to wait for.
    let mut all = Vec::new();
    while let Some(event) = events.next().now_or_never().expect("sent already") {
        all.push(event);
    }
    assert_eq!(
        all,
        vec![
            Ok(exited("a", ExitReason::Killed)),
            Ok(supervisor_stopped(ExitReason::Killed)),
        ]
    );
}

/// A child that is down as soon as it is up.
struct Flaky;

impl Supervised for Flaky {
    fn stopped(&self) -> BoxFuture<'static, ExitReason> {
        Box::pin(async { ExitReason::error("down again") })
    }

    fn request_stop(&self, _: ExitReason) {}

    fn kill(&self) {}
}

#[tokio::test]
async fn a_lagging_watcher_is_told_what_it_missed_and_never_holds_the_supervisor_back() {
    let flaky = ChildSpec::new("flaky", || async { Ok::<_, StartError>(Flaky) });
    let supervisor = Supervisor::new()
        .intensity(40, Duration::from_secs(3600))
        .watch_capacity(8)
        .child(flaky);
    let mut idle = supervisor.watch();
    let sup = supervisor.start().await.expect("starts");
    // 40 restarts, then the 41st exit is one too many: the supervisor gives up while
    // the watcher has read nothing.
    let reason = within("the supervisor gives up", sup.stopped()).await;
    assert_eq!(reason, ExitReason::TooManyRestarts);

    // Sent: the start, 40 (exit, restart) pairs, the last exit and the supervisor's
    // stop: 83 events, of which the last 8 were kept.
    let down = || exited("flaky", ExitReason::error("down again"));
    assert_eq!(next(&mut idle).await, Err(Missed(75)));
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.extend([Ok(down()), Ok(restarted("flaky"))]);
    }
    kept.extend([
        Ok(down()),
        Ok(supervisor_stopped(ExitReason::TooManyRestarts)),
    ]);
    assert_eq!(rest(&mut idle).await, kept);
}

#[tokio::test]
async fn a_failed_start_ends_the_stream_after_the_exits_of_the_children_started() {
    let log = Workers::default();
    let broken = worker(&log, "b").fails_to_start_from(0);
    let supervisor = Supervisor::new()
        .child(spec(worker(&log, "a")))
        .child(spec(broken));
    let mut events = supervisor.watch();
    assert!(supervisor.start().await.is_err());
    assert_eq!(
        rest(&mut events).await,
        vec![Ok(started("a")), Ok(exited("a", ExitReason::Shutdown))]
    );
}
