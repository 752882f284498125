//! The properties of the copies the source publishes: a retry (back to the queue,
//! or through a delay queue) and a dead letter.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use crate::message::{
    ATTEMPT_HEADER, ERROR_HEADER, EXCHANGE_HEADER, QUEUE_HEADER, ROUTING_KEY_HEADER,
};
use crate::source::Delivery;
use gen_stage_pipeline::Failure;

/// The original's `user_id`, kept in a header: the broker refuses a copy published
/// by another user with the property set.
const USER_ID_HEADER: &str = "x-gen-stage-user-id";
/// The longest error text a dead letter carries (a header counts against the
/// connection's frame size).
const ERROR_TEXT_MAX: usize = 1024;

/// The copy a retry publishes: the original's properties, the next attempt, where
/// the original was published, and none of the broker's own counts.
pub(crate) fn retry_properties(delivery: &Delivery) -> BasicProperties {
    let mut headers = copied_headers(delivery);
    headers.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(delivery.attempt) + 1),
    );
    copy_of(delivery.message.properties(), headers)
}

/// The copy a dead letter publishes: the original's properties, the attempt it
/// failed at, why (at most 1 KiB of it), and where it came from.
pub(crate) fn dead_letter_properties(
    delivery: &Delivery,
    queue: &str,
    failure: Option<&Failure>,
) -> BasicProperties {
    let mut headers = copied_headers(delivery);
    headers.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(delivery.attempt)),
    );
    headers.insert(QUEUE_HEADER.into(), text(queue));
    if let Some(failure) = failure {
        headers.insert(ERROR_HEADER.into(), text(truncated(&failure.to_string())));
    }
    copy_of(delivery.message.properties(), headers)
}

/// The original's headers, without the counts the broker keeps for the original
/// (a copy starts its own), with where the original was published and by whom.
fn copied_headers(delivery: &Delivery) -> FieldTable {
    let message = &delivery.message;
    let properties = message.properties();
    let mut headers = FieldTable::default();
    if let Some(original) = properties.headers() {
        for (name, value) in original.inner() {
            if !matches!(name.as_str(), "x-delivery-count" | "x-death") {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
    headers.insert(EXCHANGE_HEADER.into(), text(message.exchange()));
    headers.insert(ROUTING_KEY_HEADER.into(), text(message.routing_key()));
    if let Some(user) = properties.user_id() {
        headers.insert(USER_ID_HEADER.into(), text(user.as_str()));
    }
    headers
}

/// `original`'s properties with `headers`, without `user_id` (the broker checks it
/// against the publishing user) and without `expiration` (a copy is not to expire
/// on its way: a retry's delay queue sets its own).
fn copy_of(original: &BasicProperties, headers: FieldTable) -> BasicProperties {
    let mut copy = BasicProperties::default().with_headers(headers);
    let o = original;
    if let Some(v) = o.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = o.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = o.delivery_mode() {
        copy = copy.with_delivery_mode(*v);
    }
    if let Some(v) = o.priority() {
        copy = copy.with_priority(*v);
    }
    if let Some(v) = o.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = o.reply_to() {
        copy = copy.with_reply_to(v.clone());
    }
    if let Some(v) = o.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = o.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = o.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = o.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    if let Some(v) = o.cluster_id() {
        copy = copy.with_cluster_id(v.clone());
    }
    copy
}

/// `text` cut to at most [`ERROR_TEXT_MAX`] bytes, on a character boundary.
fn truncated(text: &str) -> &str {
    if text.len() <= ERROR_TEXT_MAX {
        return text;
    }
    let mut end = ERROR_TEXT_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn text(text: &str) -> AMQPValue {
    AMQPValue::LongString(text.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_keeps_the_publishers_properties_but_not_user_id_or_expiration() {
        let original = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_content_type("text/plain".into())
            .with_delivery_mode(2)
            .with_priority(3)
            .with_timestamp(17)
            .with_user_id("alice".into())
            .with_expiration("60000".into());
        let copy = copy_of(&original, FieldTable::default());
        assert_eq!(
            copy.message_id().as_ref().map(|id| id.as_str()),
            Some("m-1")
        );
        assert_eq!(
            copy.content_type().as_ref().map(|t| t.as_str()),
            Some("text/plain")
        );
        assert_eq!(
            (*copy.delivery_mode(), *copy.priority(), *copy.timestamp()),
            (Some(2), Some(3), Some(17))
        );
        assert_eq!((copy.user_id(), copy.expiration()), (&None, &None));
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("short"), "short");
        let long = "é".repeat(ERROR_TEXT_MAX);
        let cut = truncated(&long);
        assert!(cut.len() <= ERROR_TEXT_MAX && cut.len() >= ERROR_TEXT_MAX - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
