//! Bounded entry for user messages: `try_cast` gives a message back when the mailbox
//! holds its capacity, `cast_when_room` and calls wait for room, `cast` stays
//! unbounded; and a call whose stage stops before replying says why.

mod support;

use std::pin::pin;
use std::time::Duration;

use futures::FutureExt;
use gen_stage::error::{CallError, TryCastError};
use gen_stage::{
    BoxError, Consumer, ConsumerContext, ConsumerRef, ExitReason, ReplyTo, SubscriptionTag,
};
use gen_stage_test::{Gate, Recorded};
use support::within;

enum Mail {
    /// Recorded once the gate lets it through.
    Letter(u32),
    /// Answered at once.
    Ask(ReplyTo<u32>),
    /// Panics while holding the reply handle.
    Explode(ReplyTo<u32>),
    /// Drops the reply handle and goes on.
    Ignore(ReplyTo<u32>),
}

/// A consumer that handles letters one at a time, each after a pass of its gate.
struct Mailroom {
    entered: Recorded<u32>,
    handled: Recorded<u32>,
    gate: Gate,
}

impl Consumer for Mailroom {
    type Event = ();
    type Message = Mail;

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
        mail: Mail,
        _ctx: &mut ConsumerContext<'_, Self>,
    ) -> Result<(), BoxError> {
        match mail {
            Mail::Letter(number) => {
                self.entered.push(number);
                self.gate.pass().await;
                self.handled.push(number);
            }
            Mail::Ask(reply) => reply.send(7),
            Mail::Explode(_reply) => panic!("the handler exploded"),
            Mail::Ignore(reply) => drop(reply),
        }
        Ok(())
    }
}

/// A mailroom with room for `capacity` messages, inside the handler of letter 0.
async fn busy_mailroom(capacity: usize) -> (ConsumerRef<Mailroom>, Recorded<u32>, Gate) {
    let (entered, handled, gate) = (Recorded::default(), Recorded::default(), Gate::closed());
    let mailroom = Mailroom {
        entered: entered.clone(),
        handled: handled.clone(),
        gate: gate.clone(),
    };
    let stage = gen_stage::consumer(mailroom)
        .message_capacity(capacity)
        .start()
        .await
        .expect("starts");
    stage.try_cast(Mail::Letter(0)).expect("room");
    entered.wait_for_len(1).await;
    (stage, handled, gate)
}

fn letter(mail: Mail) -> Option<u32> {
    match mail {
        Mail::Letter(number) => Some(number),
        _ => None,
    }
}

#[tokio::test]
async fn try_cast_gives_the_message_back_when_the_mailbox_is_full() {
    let (stage, handled, gate) = busy_mailroom(2).await;
    stage.try_cast(Mail::Letter(1)).expect("room");
    stage.try_cast(Mail::Letter(2)).expect("room");
    match stage.try_cast(Mail::Letter(3)) {
        Err(TryCastError::Full(mail)) => assert_eq!(letter(mail), Some(3)),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(stage.stats().queued_messages, 2);
    // `cast` is unbounded: it goes in anyway, and is counted.
    assert!(stage.cast(Mail::Letter(4)).is_ok());
    assert_eq!(stage.stats().queued_messages, 3);
    gate.open_for_good();
    handled.wait_for_len(4).await;
    assert_eq!(handled.snapshot(), vec![0, 1, 2, 4]);
    assert_eq!(stage.stats().queued_messages, 0);
    stage.try_cast(Mail::Letter(5)).expect("room again");
}

#[tokio::test]
async fn cast_when_room_waits_until_the_stage_takes_a_message() {
    let (stage, handled, gate) = busy_mailroom(1).await;
    stage.try_cast(Mail::Letter(1)).expect("room");
    let mut waiting = pin!(stage.cast_when_room(Mail::Letter(2)));
    assert!((&mut waiting).now_or_never().is_none(), "no room: it waits");
    gate.open(1);
    within("room", waiting).await.expect("sent");
    gate.open_for_good();
    handled.wait_for_len(3).await;
    assert_eq!(handled.snapshot(), vec![0, 1, 2]);
}

#[tokio::test]
async fn cast_when_room_gives_the_message_back_if_the_stage_stops_meanwhile() {
    let (stage, _handled, _gate) = busy_mailroom(1).await;
    stage.try_cast(Mail::Letter(1)).expect("room");
    let waiting = tokio::spawn({
        let stage = stage.clone();
        async move { stage.cast_when_room(Mail::Letter(2)).await }
    });
    stage.kill();
    let back = within("the answer", waiting).await.expect("the task ran");
    assert_eq!(
        back.map_err(|error| letter(error.into_inner())),
        Err(Some(2))
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_waits_for_room_within_its_timeout() {
    let (stage, _handled, _closed) = busy_mailroom(1).await;
    stage.try_cast(Mail::Letter(1)).expect("room");
    let answer = stage.call_timeout(Mail::Ask, Duration::from_secs(1)).await;
    assert_eq!(answer, Err(CallError::Timeout));
    assert_eq!(stage.stats().queued_messages, 1, "the call never went in");
}

#[tokio::test]
async fn a_call_whose_handler_panics_fails_with_the_reason() {
    let (stage, _handled, gate) = busy_mailroom(4).await;
    gate.open_for_good();
    let error = stage.call(Mail::Explode).await.unwrap_err();
    let panic = ExitReason::Panic("the handler exploded".into());
    assert_eq!(error, CallError::Stopped(panic.clone()));
    assert!(
        error.to_string().contains("the handler exploded"),
        "the message shows why: {error}"
    );
    assert_eq!(stage.stopped().await, panic);
}

#[tokio::test]
async fn a_call_whose_reply_is_dropped_by_a_running_stage_fails_as_not_alive() {
    let (stage, _handled, gate) = busy_mailroom(4).await;
    gate.open_for_good();
    assert_eq!(stage.call(Mail::Ignore).await, Err(CallError::NotAlive));
    assert_eq!(stage.call(Mail::Ask).await, Ok(7), "the stage runs on");
}
