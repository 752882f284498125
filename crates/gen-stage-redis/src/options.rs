//! What a Redis Streams source is configured with.

use std::time::Duration;

use gen_stage_pipeline::Backoff;

/// How a [`RedisSource`](crate::RedisSource) reads its stream: the stream, the
/// consumer group every instance shares and this instance's consumer name, whether
/// the source creates the group, the in-flight budget, the lease after which other
/// instances claim an entry, where retries wait and rejected entries go, and how it
/// reconnects.
///
/// ```
/// use std::time::Duration;
/// use gen_stage_redis::RedisOptions;
///
/// // The consumer name is this instance's, the same after each restart: a pod name,
/// // or a host name with a slot number.
/// let options = RedisOptions::new("orders", "billing", "billing-0")
///     .max_in_flight(500)
///     .lease(Duration::from_secs(60));
/// assert_eq!(options.dead_letter_stream_name(), Some("orders:dead"));
/// assert_eq!(options.delayed_key_name(), "orders:delayed");
/// ```
#[derive(Clone, Debug)]
pub struct RedisOptions {
    pub(crate) stream: String,
    pub(crate) group: String,
    pub(crate) consumer: String,
    pub(crate) declare: bool,
    pub(crate) group_start: String,
    pub(crate) max_in_flight: usize,
    pub(crate) lease: Duration,
    pub(crate) block: Duration,
    pub(crate) dead_letter_stream: Option<String>,
    pub(crate) delayed_key: String,
    pub(crate) delete_on_ack: bool,
    pub(crate) forget_consumers_after: Option<Duration>,
    pub(crate) backoff: Backoff,
    pub(crate) max_reconnect_attempts: Option<u32>,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
}

/// The shortest lease: renewals go out every third of it.
const MIN_LEASE: Duration = Duration::from_millis(300);

impl RedisOptions {
    /// Reads `stream` as `consumer` of the consumer group `group`. Every instance of
    /// the pipeline names the same stream and group, and a consumer name of its own
    /// that stays the same across its restarts (a restarted instance takes back at
    /// once what it held when it stopped). The defaults: the group created (with the
    /// stream) if missing, reading from the stream's start; 1000 entries in flight; a
    /// 30 s lease; reads that wait up to 2 s for new entries; retries waiting in the
    /// sorted set `<stream>:delayed`; rejected entries copied to the stream
    /// `<stream>:dead`; acked entries kept in the stream (trim it, or see
    /// [`delete_on_ack`](Self::delete_on_ack)); consumers of the group idle for an
    /// hour with nothing pending forgotten; [`Backoff::default`] between
    /// reconnections, with no limit on them; 10 s for a connection and for a command.
    pub fn new(
        stream: impl Into<String>,
        group: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Self {
        let stream = stream.into();
        RedisOptions {
            dead_letter_stream: Some(format!("{stream}:dead")),
            delayed_key: format!("{stream}:delayed"),
            stream,
            group: group.into(),
            consumer: consumer.into(),
            declare: true,
            group_start: "0".to_owned(),
            max_in_flight: 1000,
            lease: Duration::from_secs(30),
            block: Duration::from_secs(2),
            delete_on_ack: false,
            forget_consumers_after: Some(Duration::from_secs(3600)),
            backoff: Backoff::default(),
            max_reconnect_attempts: None,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(10),
        }
    }

    /// Whether the source creates the consumer group (and the stream) when it
    /// connects, if missing (on by default; `XGROUP CREATE ... MKSTREAM`). Off: the
    /// group must exist, and the source checks that it does.
    pub fn declare(mut self, declare: bool) -> Self {
        self.declare = declare;
        self
    }

    /// Where a group the source creates starts reading: `"0"` (the default) reads
    /// every entry already in the stream, `"$"` only those added after, or an entry
    /// id.
    pub fn group_start(mut self, id: impl Into<String>) -> Self {
        self.group_start = id.into();
        self
    }

    /// The most entries read and not yet settled, across every producer of the
    /// source (`XREADGROUP ... COUNT` never asks for more than is free): the entries
    /// this consumer has pending in the group, as `XPENDING` shows them.
    pub fn max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self
    }

    /// How long an entry may stay pending without news from its consumer before any
    /// instance of the group claims it (`XCLAIM` with this minimum idle time):
    /// the time a crashed instance's entries wait, and the time a partitioned one
    /// keeps its claim. The source renews the entries it holds every third of it, so
    /// a long handler keeps its entry. Every instance of a group must use the same
    /// lease. 30 s by default; at least 300 ms.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a read waits at the server for new entries when there are none
    /// (`BLOCK`), 2 s by default: an idle source costs one command per wait, and
    /// wakes as soon as an entry is added.
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// The stream rejected entries are copied to (with fields saying why), in the same
    /// script that acknowledges them; `None` acknowledges them without a copy.
    /// `<stream>:dead` by default.
    pub fn dead_letter_stream(mut self, stream: Option<impl Into<String>>) -> Self {
        self.dead_letter_stream = stream.map(Into::into);
        self
    }

    /// The sorted set retries wait in until they are due, `<stream>:delayed` by
    /// default (each scored by its due time, added back to the stream once due).
    pub fn delayed_key(mut self, key: impl Into<String>) -> Self {
        self.delayed_key = key.into();
        self
    }

    /// Whether an acknowledged (or terminated, retried or rejected) entry is also
    /// deleted from the stream (`XDEL`), so the stream holds only unsettled work. Off
    /// by default: with several groups on one stream, each group's acks would delete
    /// entries the others have not read; trim the stream (`XADD ... MAXLEN`, `XTRIM`)
    /// instead.
    pub fn delete_on_ack(mut self, delete: bool) -> Self {
        self.delete_on_ack = delete;
        self
    }

    /// After how long without reading, a consumer of the group with nothing pending
    /// is removed from it (`XGROUP DELCONSUMER`), so consumer names of instances that
    /// are gone do not pile up; `None` keeps them. An hour by default. A running
    /// instance reads at least every [`block`](Self::block), and a consumer with
    /// entries pending is never removed, so only instances that are gone lose their
    /// names (one that comes back is added again by its first read).
    pub fn forget_consumers_after(mut self, idle: Option<Duration>) -> Self {
        self.forget_consumers_after = idle;
        self
    }

    /// The waits between reconnection attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Failed reads in a row after which the producers stop with the error; `None`
    /// (the default) retries for ever.
    pub fn max_reconnect_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_reconnect_attempts = attempts;
        self
    }

    /// How long one connection attempt may take (10 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a command may wait for its answer, beyond a read's
    /// [`block`](Self::block) (10 s by default): a server that stops answering fails
    /// the command rather than hanging it.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The stream read.
    pub fn stream_name(&self) -> &str {
        &self.stream
    }

    /// The consumer group.
    pub fn group_name(&self) -> &str {
        &self.group
    }

    /// This instance's consumer name.
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    /// The stream rejected entries are copied to, if any.
    pub fn dead_letter_stream_name(&self) -> Option<&str> {
        self.dead_letter_stream.as_deref()
    }

    /// The sorted set retries wait in.
    pub fn delayed_key_name(&self) -> &str {
        &self.delayed_key
    }

    /// The key that says which process holds this consumer name now.
    pub(crate) fn owner_key(&self) -> String {
        format!("{}:{}:{}:owner", self.stream, self.group, self.consumer)
    }

    /// What makes these options unusable, if anything.
    pub(crate) fn problem(&self) -> Option<String> {
        let names = [
            ("stream", &self.stream),
            ("group", &self.group),
            ("consumer", &self.consumer),
            ("delayed key", &self.delayed_key),
            ("group start", &self.group_start),
        ];
        if let Some((what, _)) = names.iter().find(|(_, name)| name.is_empty()) {
            return Some(format!("the {what} is empty"));
        }
        if self.consumer == crate::scripts::RELEASED_CONSUMER {
            return Some(format!(
                "the consumer name {:?} is the one released entries wait under",
                self.consumer
            ));
        }
        if self.max_in_flight == 0 {
            return Some("max_in_flight is 0: at least one entry must be in flight".into());
        }
        if self.lease < MIN_LEASE {
            return Some(format!(
                "the lease is {:?}: it must be at least {MIN_LEASE:?}",
                self.lease
            ));
        }
        if self.block.is_zero() || self.block.as_millis() > u128::from(u32::MAX) {
            return Some(format!(
                "block is {:?}: it must be from 1 ms to 49 days",
                self.block
            ));
        }
        if self.connect_timeout.is_zero() || self.command_timeout.is_zero() {
            return Some("connect_timeout and command_timeout must not be zero".into());
        }
        if let Some(dead) = &self.dead_letter_stream
            && (dead.is_empty() || *dead == self.stream || *dead == self.delayed_key)
        {
            return Some(
                "the dead-letter stream must be named, and be neither the stream nor the delayed key"
                    .into(),
            );
        }
        if self.delayed_key == self.stream {
            return Some("the delayed key is the stream itself".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_work_and_name_their_keys_after_the_stream() {
        let options = RedisOptions::new("orders", "billing", "billing-0");
        assert!(options.problem().is_none());
        assert_eq!(options.dead_letter_stream_name(), Some("orders:dead"));
        assert_eq!(options.delayed_key_name(), "orders:delayed");
        assert_eq!(options.owner_key(), "orders:billing:billing-0:owner");
    }

    #[test]
    fn options_that_cannot_work_are_refused_with_what_is_wrong() {
        let problem = |options: RedisOptions| options.problem().unwrap_or_default();
        let base = || RedisOptions::new("s", "g", "c");
        assert!(problem(RedisOptions::new("s", "g", "")).contains("consumer is empty"));
        assert!(problem(base().max_in_flight(0)).contains("max_in_flight is 0"));
        assert!(problem(base().lease(Duration::from_millis(10))).contains("lease is 10ms"));
        assert!(problem(base().block(Duration::ZERO)).contains("block is 0ns"));
        assert!(problem(base().dead_letter_stream(Some("s"))).contains("dead-letter"));
        assert!(problem(base().delayed_key("s")).contains("delayed key"));
        assert!(
            base()
                .dead_letter_stream(None::<String>)
                .problem()
                .is_none()
        );
    }
}
