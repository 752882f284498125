//! A message as the pipeline's callbacks see it, and what the source reads from its
//! properties: its attempt and its identity.

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};

/// Header the source sets on a retried copy: which attempt the copy's delivery is.
pub(crate) const ATTEMPT_HEADER: &str = "x-gen-stage-attempt";
/// Headers the source sets on a retried or dead-lettered copy: where the original
/// was published.
pub(crate) const EXCHANGE_HEADER: &str = "x-gen-stage-exchange";
pub(crate) const ROUTING_KEY_HEADER: &str = "x-gen-stage-routing-key";
/// Headers the source sets on a dead-lettered copy.
pub(crate) const QUEUE_HEADER: &str = "x-gen-stage-queue";
pub(crate) const ERROR_HEADER: &str = "x-gen-stage-error";
/// The header a quorum queue keeps: how many times the message was returned to it.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// A message delivered from the queue: its body, properties and where it was
/// published. Cheap to clone (shared): the source keeps a reference to copy the
/// message for a retry with a delay or to the dead-letter queue.
#[derive(Clone, Debug)]
pub struct RabbitMessage(pub(crate) Arc<Body>);

#[derive(Debug)]
pub(crate) struct Body {
    pub(crate) data: Vec<u8>,
    pub(crate) exchange: ShortString,
    pub(crate) routing_key: ShortString,
    pub(crate) redelivered: bool,
    pub(crate) properties: BasicProperties,
}

impl RabbitMessage {
    pub(crate) fn new(
        data: Vec<u8>,
        exchange: ShortString,
        routing_key: ShortString,
        redelivered: bool,
        properties: BasicProperties,
    ) -> Self {
        RabbitMessage(Arc::new(Body {
            data,
            exchange,
            routing_key,
            redelivered,
            properties,
        }))
    }

    /// The body, as published.
    pub fn data(&self) -> &[u8] {
        &self.0.data
    }

    /// The exchange the message was published to (for a retried message: the
    /// original's, not the delay queue's).
    pub fn exchange(&self) -> &str {
        header_text(&self.0.properties, EXCHANGE_HEADER).unwrap_or(self.0.exchange.as_str())
    }

    /// The routing key the message was published with (for a retried message: the
    /// original's).
    pub fn routing_key(&self) -> &str {
        header_text(&self.0.properties, ROUTING_KEY_HEADER).unwrap_or(self.0.routing_key.as_str())
    }

    /// The properties the message was published with: content type, headers,
    /// `message_id`, timestamps.
    pub fn properties(&self) -> &BasicProperties {
        &self.0.properties
    }

    /// Whether the broker delivered this copy before (to this consumer or another
    /// that did not settle it).
    pub fn redelivered(&self) -> bool {
        self.0.redelivered
    }
}

/// Which attempt a delivery is, from 1: the attempt a retried copy was published
/// for (1 for an original), plus the returns a quorum queue counted, or plus one if
/// a classic queue says it was delivered before (it does not say how often).
pub(crate) fn attempt_of(properties: &BasicProperties, redelivered: bool) -> u32 {
    let headers = properties.headers().as_ref();
    let published = headers
        .and_then(|headers| count(headers, ATTEMPT_HEADER))
        .unwrap_or(1)
        .max(1);
    let returned = match headers.and_then(|headers| count(headers, DELIVERY_COUNT_HEADER)) {
        Some(returns) => returns,
        None => u64::from(redelivered),
    };
    u32::try_from(published.saturating_add(returned)).unwrap_or(u32::MAX)
}

/// A header holding a whole number, whichever integer type the publisher used.
fn count(headers: &FieldTable, name: &str) -> Option<u64> {
    match headers.inner().get(name)? {
        AMQPValue::ShortShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// A header holding text.
fn header_text<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a str> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(text) => std::str::from_utf8(text.as_bytes()).ok(),
        AMQPValue::ShortString(text) => Some(text.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_headers(headers: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert((*name).into(), value.clone());
        }
        BasicProperties::default().with_headers(table)
    }

    #[test]
    fn an_original_is_attempt_one_and_two_once_redelivered() {
        let plain = BasicProperties::default();
        assert_eq!(attempt_of(&plain, false), 1);
        assert_eq!(attempt_of(&plain, true), 2);
    }

    #[test]
    fn a_retried_copy_carries_its_attempt_whatever_the_integer_type() {
        let copy = with_headers(&[(ATTEMPT_HEADER, AMQPValue::LongLongInt(3))]);
        assert_eq!(attempt_of(&copy, false), 3);
        assert_eq!(attempt_of(&copy, true), 4);
        let small = with_headers(&[(ATTEMPT_HEADER, AMQPValue::ShortShortUInt(5))]);
        assert_eq!(attempt_of(&small, false), 5);
        let nonsense = with_headers(&[(ATTEMPT_HEADER, AMQPValue::LongInt(-4))]);
        assert_eq!(attempt_of(&nonsense, false), 1);
    }

    #[test]
    fn a_quorum_queue_counts_the_returns() {
        let returned = with_headers(&[
            (ATTEMPT_HEADER, AMQPValue::LongLongInt(2)),
            (DELIVERY_COUNT_HEADER, AMQPValue::LongLongInt(3)),
        ]);
        assert_eq!(attempt_of(&returned, true), 5);
    }

    #[test]
    fn a_retried_copy_reports_where_the_original_was_published() {
        let copy = with_headers(&[
            (EXCHANGE_HEADER, AMQPValue::LongString("orders".into())),
            (
                ROUTING_KEY_HEADER,
                AMQPValue::LongString("orders.new".into()),
            ),
        ]);
        let message = RabbitMessage::new(vec![1], "".into(), "q.delay.100".into(), false, copy);
        assert_eq!(message.exchange(), "orders");
        assert_eq!(message.routing_key(), "orders.new");
        let original = RabbitMessage::new(
            vec![1],
            "x".into(),
            "k".into(),
            true,
            BasicProperties::default(),
        );
        assert_eq!((original.exchange(), original.routing_key()), ("x", "k"));
        assert!(original.redelivered());
    }
}
