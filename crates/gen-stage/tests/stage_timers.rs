//! Timers that belong to a stage: `send_after` hands its message to the stage's own
//! `handle_message` after the delay, a cancelled timer never fires, and thousands of
//! timers cost no task each. Every test runs on tokio's paused clock.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use gen_stage::{
    BoxError, Consumer, ConsumerContext, ConsumerRef, ExitReason, ReplyTo, SubscriptionTag,
    TimerRef,
};
use gen_stage_test::{Gate, Recorded};
use support::within;

enum Clock {
    /// Sets timer `id` to fire after the delay.
    Set(u32, Duration),
    /// Sets `count` timers, ids `0..count`, the later ones later.
    SetMany(u32),
    /// Waits for a pass of the gate, then cancels timer `id`, and replies whether it
    /// was still pending.
    HoldThenCancel(u32, ReplyTo<bool>),
    /// A timer's message.
    Fired(u32),
}

/// A consumer that sets and cancels timers on request, and records each timer's
/// message with the time it came.
struct Alarm {
    timers: HashMap<u32, TimerRef>,
    fired: Recorded<(u32, Duration)>,
    gate: Gate,
    started: tokio::time::Instant,
}

impl Consumer for Alarm {
    type Event = ();
    type Message = Clock;

    async fn handle_events(
        &mut self,
        _events: Vec<()>,
        _from: SubscriptionTag,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    async fn handle_message(
        &mut self,
        clock: Clock,
        ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match clock {
            Clock::Set(id, delay) => {
                let timer = ctx.send_after(delay, Clock::Fired(id));
                self.timers.insert(id, timer);
            }
            Clock::SetMany(count) => {
                for id in 0..count {
                    let delay = Duration::from_millis(u64::from(id));
                    let timer = ctx.send_after(delay, Clock::Fired(id));
                    self.timers.insert(id, timer);
                }
            }
            Clock::HoldThenCancel(id, reply) => {
                self.gate.pass().await;
                let cancelled = self.timers.get(&id).is_some_and(|&t| ctx.cancel_timer(t));
                reply.send(cancelled);
            }
            Clock::Fired(id) => self.fired.push((id, self.started.elapsed())),
        }
        Ok(())
    }
}

async fn alarm() -> (ConsumerRef<Alarm>, Recorded<(u32, Duration)>, Gate) {
    let (fired, gate) = (Recorded::default(), Gate::closed());
    let alarm = Alarm {
        timers: HashMap::new(),
        fired: fired.clone(),
        gate: gate.clone(),
        started: tokio::time::Instant::now(),
    };
    let stage = gen_stage::consumer(alarm).start().await.expect("starts");
    (stage, fired, gate)
}

#[tokio::test(start_paused = true)]
async fn a_timer_hands_its_message_to_the_stage_after_the_delay() {
    let (stage, fired, _gate) = alarm().await;
    stage
        .cast(Clock::Set(1, Duration::from_millis(250)))
        .expect("alive");
    stage
        .cast(Clock::Set(2, Duration::from_millis(100)))
        .expect("alive");
    within("the timers", fired.wait_for_len(2)).await;
    assert_eq!(
        fired.snapshot(),
        vec![
            (2, Duration::from_millis(100)),
            (1, Duration::from_millis(250))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_timer_never_fires_even_when_it_was_already_due() {
    let (stage, fired, gate) = alarm().await;
    stage
        .cast(Clock::Set(1, Duration::from_millis(10)))
        .expect("alive");
    let cancelling = tokio::spawn({
        let stage = stage.clone();
        async move { stage.call(|reply| Clock::HoldThenCancel(1, reply)).await }
    });
    // The timer falls due while the stage is held in a hook.
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.open_for_good();
    let cancelled = within("the cancel", cancelling).await.expect("ran");
    assert_eq!(cancelled, Ok(true));
    // A later timer fires; the cancelled one never did.
    stage
        .cast(Clock::Set(2, Duration::from_millis(10)))
        .expect("alive");
    within("the later timer", fired.wait_for_len(1)).await;
    assert_eq!(fired.snapshot()[0].0, 2);
}

#[tokio::test(start_paused = true)]
async fn thousands_of_timers_cost_no_task_each_and_fire_in_order() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let (stage, fired, _gate) = alarm().await;
    let before = metrics.num_alive_tasks();
    stage.cast(Clock::SetMany(5000)).expect("alive");
    within("the timers", fired.wait_for_len(1)).await;
    assert_eq!(metrics.num_alive_tasks(), before, "no task per timer");
    within("the timers", fired.wait_for_len(5000)).await;
    let ids: Vec<u32> = fired.snapshot().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, (0..5000).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn timers_die_with_their_stage() {
    let (stage, fired, _gate) = alarm().await;
    stage
        .cast(Clock::Set(1, Duration::from_secs(1)))
        .expect("alive");
    stage.cast(Clock::Set(2, Duration::ZERO)).expect("alive");
    // Timer 2 fired: timer 1 is set, and pending.
    within("the first timer", fired.wait_for_len(1)).await;
    stage.stop(ExitReason::Shutdown).await.expect("alive");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fired.snapshot(), vec![(2, Duration::ZERO)]);
}
