//! The reply handle of a call.

use std::fmt;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::lifecycle::Lifecycle;

/// Where a stage sends the reply to a call. Send it now or keep it to reply later;
/// dropping it without replying fails the call: with
/// [`CallError::Stopped`](crate::error::CallError::Stopped) and the reason, if the stage
/// stops because of the hook that dropped it (a panic, an error), otherwise with
/// [`CallError::NotAlive`](crate::error::CallError::NotAlive).
pub struct ReplyTo<R> {
    sender: Option<oneshot::Sender<R>>,
    /// The stage that was called, and how to hand it the sender if the stage's own
    /// code drops this handle: the caller then learns whether the stage stops.
    stage: Option<(Arc<Lifecycle>, Defer<R>)>,
}

type Defer<R> = fn(&Lifecycle, oneshot::Sender<R>);

impl<R> ReplyTo<R> {
    /// A reply handle and the receiver of its reply, for calls made without a
    /// [`StageRef`](crate::StageRef) (tests, custom routing).
    pub fn pair() -> (Self, oneshot::Receiver<R>) {
        let (sender, receiver) = oneshot::channel();
        let reply = ReplyTo {
            sender: Some(sender),
            stage: None,
        };
        (reply, receiver)
    }

    /// Sends the reply. A caller that stopped waiting (timeout) is ignored.
    pub fn send(mut self, reply: R) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(reply);
        }
    }

    /// Whether the caller stopped waiting.
    pub fn is_closed(&self) -> bool {
        self.sender.as_ref().is_none_or(oneshot::Sender::is_closed)
    }
}

impl<R: Send + 'static> ReplyTo<R> {
    /// A reply handle for a call to the stage whose life is `stage`.
    pub(crate) fn for_stage(stage: Arc<Lifecycle>) -> (Self, oneshot::Receiver<R>) {
        let (sender, receiver) = oneshot::channel();
        let reply = ReplyTo {
            sender: Some(sender),
            stage: Some((stage, defer::<R>)),
        };
        (reply, receiver)
    }
}

fn defer<R: Send + 'static>(stage: &Lifecycle, sender: oneshot::Sender<R>) {
    // Dropped here, at once, unless the stage keeps it.
    drop(stage.defer_reply(Box::new(sender)));
}

impl<R> Drop for ReplyTo<R> {
    fn drop(&mut self) {
        if let (Some(sender), Some((stage, defer))) = (self.sender.take(), self.stage.take()) {
            defer(&stage, sender);
        }
    }
}

impl<R> fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyTo").finish_non_exhaustive()
    }
}
