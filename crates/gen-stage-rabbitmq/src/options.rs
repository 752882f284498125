//! What a RabbitMQ source is configured with.

use std::time::Duration;

use gen_stage_pipeline::Backoff;
use lapin::types::FieldTable;

/// The largest budget: AMQP's prefetch count is a 16-bit number.
const MAX_PREFETCH: usize = u16::MAX as usize;

/// How a [`RabbitSource`](crate::RabbitSource) consumes its queue: the queue by name,
/// whether the source declares it, the budget the broker's prefetch enforces, where
/// rejected messages go, and how it reconnects.
///
/// ```
/// use gen_stage_rabbitmq::RabbitOptions;
///
/// let options = RabbitOptions::new("orders")
///     .max_in_flight(500)
///     .consumer_tag("billing")
///     .max_reconnect_attempts(Some(20));
/// assert_eq!(options.queue_name(), "orders");
/// assert_eq!(options.dead_letter_queue_name(), Some("orders.dead"));
/// ```
#[derive(Clone, Debug)]
pub struct RabbitOptions {
    pub(crate) queue: String,
    pub(crate) declare: bool,
    pub(crate) queue_arguments: FieldTable,
    pub(crate) max_in_flight: usize,
    pub(crate) dead_letter_queue: Option<String>,
    pub(crate) consumer_tag: String,
    pub(crate) backoff: Backoff,
    pub(crate) max_reconnect_attempts: Option<u32>,
    pub(crate) connect_timeout: Duration,
}

impl RabbitOptions {
    /// Consumes `queue` (every instance of the pipeline names the same one, and the
    /// broker shares its messages among them), with the defaults: the queue declared
    /// durable if it does not exist, 1000 messages in flight (the channel's
    /// prefetch), rejected messages copied to the queue `<queue>.dead`, consumer tags
    /// starting with `gen-stage`, [`Backoff::default`] between reconnections, no
    /// limit on them, and 30 s for each connection attempt.
    pub fn new(queue: impl Into<String>) -> Self {
        let queue = queue.into();
        RabbitOptions {
            dead_letter_queue: Some(format!("{queue}.dead")),
            queue,
            declare: true,
            queue_arguments: FieldTable::default(),
            max_in_flight: 1000,
            consumer_tag: "gen-stage".to_owned(),
            backoff: Backoff::default(),
            max_reconnect_attempts: None,
            connect_timeout: Duration::from_secs(30),
        }
    }

    /// Whether the source declares what it uses when it connects (on by default):
    /// the queue (durable, with [`queue_arguments`](Self::queue_arguments)) and the
    /// dead-letter queue, both only if missing (declaring an existing queue with
    /// other arguments fails with the broker's `PRECONDITION_FAILED`). Off: they
    /// must exist, and the source checks that they do. Delay queues for retries are
    /// declared on first use either way (see the crate's guide).
    pub fn declare(mut self, declare: bool) -> Self {
        self.declare = declare;
        self
    }

    /// Arguments the queue is declared with, such as `x-queue-type: quorum` (whose
    /// delivery count then gives each message's attempt) or `x-max-length`.
    pub fn queue_arguments(mut self, arguments: FieldTable) -> Self {
        self.queue_arguments = arguments;
        self
    }

    /// The most messages delivered and not yet settled, across every producer of
    /// the source: the channel's prefetch count, so the broker enforces it too.
    /// From 1 to 65 535.
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self
    }

    /// Where rejected messages are copied (through the default exchange, waiting for
    /// the broker to confirm), with headers saying why; `None` rejects them with
    /// `basic.reject` instead, so the queue's own dead-letter exchange, if it has
    /// one, takes them. `<queue>.dead` by default.
    pub fn dead_letter_queue(mut self, queue: Option<impl Into<String>>) -> Self {
        self.dead_letter_queue = queue.map(Into::into);
        self
    }

    /// How the consumer tags start (`<tag>-<process id>-<connection number>`): what
    /// the broker's management tools show for this instance's consumers.
    pub fn consumer_tag(mut self, tag: impl Into<String>) -> Self {
        self.consumer_tag = tag.into();
        self
    }

    /// The waits between reconnection attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Failed reconnection attempts in a row after which the producers stop with
    /// the error; `None` (the default) retries for ever.
    pub fn max_reconnect_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_reconnect_attempts = attempts;
        self
    }

    /// How long one connection attempt may take, from the TCP connect to the
    /// consumer started (30 s by default): a broker that accepts and never answers
    /// fails the attempt with [`ConnectError::TimedOut`](crate::ConnectError::TimedOut)
    /// rather than hanging it.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The queue consumed.
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The queue rejected messages are copied to, if any.
    pub fn dead_letter_queue_name(&self) -> Option<&str> {
        self.dead_letter_queue.as_deref()
    }

    /// What makes these options unusable, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.queue.is_empty() {
            return Some("the queue name is empty".into());
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_PREFETCH {
            return Some(format!(
                "max_in_flight is {}: it must be from 1 to {MAX_PREFETCH} (the prefetch count is 16 bits)",
                self.max_in_flight
            ));
        }
        // A delay queue's name is `<queue>.delay.<milliseconds>`.
        if self.queue.len() > 230 {
            return Some("the queue name is longer than 230 bytes".into());
        }
        if self.connect_timeout.is_zero() {
            return Some("connect_timeout is zero".into());
        }
        if self.dead_letter_queue.as_deref() == Some(self.queue.as_str()) {
            return Some("the dead-letter queue is the queue itself".into());
        }
        if self
            .dead_letter_queue
            .as_ref()
            .is_some_and(|queue| queue.is_empty() || queue.len() > 255)
        {
            return Some("the dead-letter queue's name must be 1 to 255 bytes".into());
        }
        None
    }

    /// The prefetch count, once the options are checked.
    pub(crate) fn prefetch(&self) -> u16 {
        u16::try_from(self.max_in_flight).unwrap_or(u16::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_outside_the_prefetch_count_are_refused() {
        assert!(RabbitOptions::new("q").problem().is_none());
        let zero = RabbitOptions::new("q").max_in_flight(0).problem();
        assert!(zero.is_some_and(|problem| problem.contains("max_in_flight is 0")));
        assert!(
            RabbitOptions::new("q")
                .max_in_flight(65_536)
                .problem()
                .is_some()
        );
        assert_eq!(
            RabbitOptions::new("q").max_in_flight(65_535).prefetch(),
            65_535
        );
    }

    #[test]
    fn names_that_cannot_work_are_refused() {
        assert!(RabbitOptions::new("").problem().is_some());
        assert!(
            RabbitOptions::new("q")
                .dead_letter_queue(Some("q"))
                .problem()
                .is_some()
        );
        assert!(
            RabbitOptions::new("q")
                .dead_letter_queue(Some(""))
                .problem()
                .is_some()
        );
        assert!(
            RabbitOptions::new("q")
                .dead_letter_queue(None::<String>)
                .problem()
                .is_none()
        );
    }
}
