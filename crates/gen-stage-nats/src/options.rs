//! What a JetStream source is configured with.

use std::time::Duration;

use gen_stage_pipeline::Backoff;

/// How a [`JetStreamSource`](crate::JetStreamSource) consumes its stream: the stream
/// and durable consumer by name, the consumer's settings when the source declares it,
/// and the source's own budget and waits.
///
/// ```
/// use std::time::Duration;
/// use gen_stage_nats::JetStreamOptions;
///
/// let options = JetStreamOptions::new("ORDERS", "billing")
///     .subjects(["orders.>"])
///     .ack_wait(Duration::from_secs(60))
///     .max_in_flight(500)
///     .dead_letter_subject("dead.orders");
/// assert_eq!(options.consumer_name(), "billing");
/// ```
#[derive(Clone, Debug)]
pub struct JetStreamOptions {
    pub(crate) stream: String,
    pub(crate) consumer: String,
    pub(crate) subjects: Vec<String>,
    pub(crate) declare: bool,
    pub(crate) ack_wait: Duration,
    pub(crate) max_deliver: i64,
    pub(crate) max_in_flight: usize,
    pub(crate) max_ack_pending: Option<i64>,
    pub(crate) idle_wait: Duration,
    pub(crate) dead_letter_subject: Option<String>,
    pub(crate) backoff: Backoff,
}

impl JetStreamOptions {
    /// Consumes stream `stream` through the durable pull consumer `consumer` (every
    /// instance of the pipeline names the same one, and the server shares the
    /// messages among them), with the defaults: the stream declared with the subjects
    /// `<stream>.>` if it does not exist, a 30 s ack wait, no delivery limit (the
    /// pipeline's retry policy decides), 1000 messages in flight, a 5 s long poll when
    /// idle, no dead-letter subject, [`Backoff::default`] between reconnections.
    pub fn new(stream: impl Into<String>, consumer: impl Into<String>) -> Self {
        let stream = stream.into();
        JetStreamOptions {
            subjects: vec![format!("{stream}.>")],
            stream,
            consumer: consumer.into(),
            declare: true,
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            max_in_flight: 1000,
            max_ack_pending: None,
            idle_wait: Duration::from_secs(5),
            dead_letter_subject: None,
            backoff: Backoff::default(),
        }
    }

    /// The subjects the stream is declared with (only when it does not exist yet).
    pub fn subjects<S: Into<String>>(mut self, subjects: impl IntoIterator<Item = S>) -> Self {
        self.subjects = subjects.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the source declares what it uses when it connects (on by default): the
    /// stream (work-queue retention, file storage) if it does not exist, the dead-letter
    /// stream `<stream>_dead` over the dead-letter subject, and the durable consumer.
    /// Off: they must exist, and the source needs only the rights to read their
    /// information, fetch and acknowledge.
    pub fn declare(mut self, declare: bool) -> Self {
        self.declare = declare;
        self
    }

    /// The consumer's ack wait: a message not settled within it is delivered again.
    /// The source renews the wait of each message in flight (`+WPI`) every third of
    /// it, so a long handler keeps its message. At least 1 s.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// The consumer's `max_deliver`: the server stops delivering a message after this
    /// many deliveries (and publishes a `MAX_DELIVERIES` advisory). -1 (the default):
    /// no limit, the pipeline's retry policy rejects a message instead.
    pub fn max_deliver(mut self, max_deliver: i64) -> Self {
        self.max_deliver = max_deliver;
        self
    }

    /// The most messages this source holds fetched and not yet settled, across all
    /// its producers (1000 by default).
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// The consumer's `max_ack_pending`, the server's own bound on messages delivered
    /// and not acknowledged across every instance sharing the consumer. By default
    /// [`max_in_flight`](Self::max_in_flight): with several instances, set it to their
    /// sum.
    pub fn max_ack_pending(mut self, max: i64) -> Self {
        self.max_ack_pending = Some(max);
        self
    }

    /// How long an idle source's pull waits at the server for a message before it
    /// asks again (5 s by default). A message published meanwhile is delivered at
    /// once.
    pub fn idle_wait(mut self, wait: Duration) -> Self {
        self.idle_wait = wait;
        self
    }

    /// Where a rejected message goes: it is published there (with headers naming its
    /// stream, sequence, subject, attempt and error) before it is terminated. Without
    /// one, a rejected message is terminated (`+TERM`; the server publishes a
    /// `MSG_TERMINATED` advisory).
    pub fn dead_letter_subject(mut self, subject: impl Into<String>) -> Self {
        self.dead_letter_subject = Some(subject.into());
        self
    }

    /// The waits between reconnection attempts, when the source makes the connection
    /// ([`JetStreamSource::connect`](crate::JetStreamSource::connect)).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The durable consumer's name.
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    pub(crate) fn ack_pending_limit(&self) -> i64 {
        self.max_ack_pending
            .unwrap_or_else(|| i64::try_from(self.max_in_flight).unwrap_or(i64::MAX))
    }

    /// What is wrong with the options, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.stream.is_empty() || self.consumer.is_empty() {
            return Some("the stream and the consumer need names".into());
        }
        if self.ack_wait < Duration::from_secs(1) {
            return Some(format!(
                "ack_wait {:?} is under the 1 s minimum",
                self.ack_wait
            ));
        }
        if self.max_in_flight == 0 {
            return Some("max_in_flight must be at least 1".into());
        }
        if self.idle_wait < Duration::from_millis(10) {
            return Some(format!("idle_wait {:?} is under 10 ms", self.idle_wait));
        }
        if self.declare && self.subjects.is_empty() {
            return Some("a declared stream needs at least one subject".into());
        }
        None
    }
}
