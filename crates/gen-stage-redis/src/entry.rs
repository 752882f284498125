//! Stream entries as the server gives them, and what the source reads from them:
//! the entry id, and the attempt and stable id a retried entry carries.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;

use redis::streams::StreamId;
use redis::{RedisWrite, ToRedisArgs, Value};

/// The field a retried entry carries its stable id in: the first entry's id.
pub(crate) const ID_FIELD: &str = "gen-stage-id";
/// The field a retried entry carries the attempts before it in.
pub(crate) const ATTEMPT_FIELD: &str = "gen-stage-attempt";

/// An entry id, `<milliseconds>-<sequence>`: two numbers, copied without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EntryId {
    millis: u64,
    sequence: u64,
}

impl EntryId {
    pub(crate) fn parse(id: &str) -> Option<EntryId> {
        let (millis, sequence) = id.split_once('-')?;
        Some(EntryId {
            millis: millis.parse().ok()?,
            sequence: sequence.parse().ok()?,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.millis, self.sequence)
    }
}

impl ToRedisArgs for EntryId {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        // Writing to the command's own buffer cannot fail.
        let _ = write!(out.writer_for_next_arg(), "{self}");
    }
}

/// One entry read or claimed: its fields, and the group's delivery count for it.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) entry: StreamId,
    pub(crate) count: u64,
}

/// What the source reads from an entry as it takes it: its id, the attempt this
/// delivery is (the attempts before a retry's entry, plus the group's delivery
/// count), and its stable id if a retry carried one. The carried fields are taken
/// out of the entry's fields.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) id: EntryId,
    pub(crate) attempt: u32,
    pub(crate) origin: Option<EntryId>,
}

impl Identity {
    /// `None` for an id the server would not give (not `<number>-<number>`).
    pub(crate) fn take_from(taken: &mut Taken) -> Option<Identity> {
        let id = EntryId::parse(&taken.entry.id)?;
        let fields = &mut taken.entry.map;
        let before = fields
            .remove(ATTEMPT_FIELD)
            .and_then(|value| redis::from_redis_value::<u32>(value).ok())
            .unwrap_or(0);
        let origin = fields
            .remove(ID_FIELD)
            .and_then(|value| redis::from_redis_value::<String>(value).ok())
            .and_then(|origin| EntryId::parse(&origin));
        let count = u32::try_from(taken.count).unwrap_or(u32::MAX);
        Some(Identity {
            id,
            attempt: before.saturating_add(count.max(1)),
            origin,
        })
    }

    /// The id that stays the same across the entry's retries.
    pub(crate) fn stable(&self) -> EntryId {
        self.origin.unwrap_or(self.id)
    }
}

/// What a read or claim brought: entries to hand to the pipeline, and entries that
/// cannot be (field names that are not UTF-8), with their delivery counts.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) taken: Vec<Taken>,
    pub(crate) malformed: Vec<(EntryId, u64)>,
}

impl Parsed {
    /// One entry, `id` and its flat `field, value, ...` array.
    fn add(&mut self, id: Value, fields: Value, count: u64) {
        let Ok(id) = redis::from_redis_value::<String>(id) else {
            tracing::warn!("Redis: an entry without a readable id, left pending");
            return;
        };
        let Some(entry_id) = EntryId::parse(&id) else {
            tracing::warn!(%id, "Redis: an entry id that is not <ms>-<seq>, left pending");
            return;
        };
        match redis::from_redis_value::<Vec<(String, Value)>>(fields) {
            Ok(pairs) => {
                let entry = StreamId {
                    id,
                    map: pairs.into_iter().collect::<HashMap<String, Value>>(),
                    ..StreamId::default()
                };
                self.taken.push(Taken { entry, count });
            }
            Err(_) => self.malformed.push((entry_id, count)),
        }
    }
}

/// The entries of an `XREADGROUP` answer (one stream; RESP2 or RESP3), each a first
/// delivery.
pub(crate) fn read(reply: Value) -> Parsed {
    let mut parsed = Parsed::default();
    let streams: Vec<Value> = match reply {
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(parts) => parts.into_iter().nth(1),
                _ => None,
            })
            .collect(),
        Value::Map(streams) => streams.into_iter().map(|(_, entries)| entries).collect(),
        _ => Vec::new(),
    };
    for entries in streams {
        let Value::Array(entries) = entries else {
            continue;
        };
        for entry in entries {
            let Value::Array(pair) = entry else {
                continue;
            };
            let mut pair = pair.into_iter();
            if let (Some(id), Some(fields)) = (pair.next(), pair.next()) {
                parsed.add(id, fields, 1);
            }
        }
    }
    parsed
}

/// Entries from a claim script's answer: `id, [field, value, ...], count` each.
pub(crate) fn claimed(values: Vec<Value>) -> Parsed {
    let mut parsed = Parsed::default();
    let mut values = values.into_iter();
    while let (Some(id), Some(fields), Some(count)) = (values.next(), values.next(), values.next())
    {
        let count = redis::from_redis_value::<u64>(count).unwrap_or(1);
        parsed.add(id, fields, count);
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(id: &str, fields: &[(&str, &str)], count: u64) -> Taken {
        let map = fields
            .iter()
            .map(|(field, value)| {
                (
                    (*field).to_owned(),
                    Value::BulkString(value.as_bytes().to_vec()),
                )
            })
            .collect();
        let entry = StreamId {
            id: id.to_owned(),
            map,
            ..StreamId::default()
        };
        Taken { entry, count }
    }

    #[test]
    fn entry_ids_round_trip_through_their_text() {
        let id = EntryId::parse("1796316775217-12").expect("an entry id");
        assert_eq!(id.to_string(), "1796316775217-12");
        assert_eq!(id.to_redis_args(), vec![b"1796316775217-12".to_vec()]);
        assert!(EntryId::parse("12").is_none());
        assert!(EntryId::parse("a-1").is_none());
    }

    #[test]
    fn a_first_entry_is_its_own_stable_id_and_its_attempt_is_the_delivery_count() {
        let mut first = taken("5-0", &[("order", "42")], 3);
        let identity = Identity::take_from(&mut first).expect("an identity");
        assert_eq!(identity.attempt, 3);
        assert_eq!(identity.stable().to_string(), "5-0");
        assert_eq!(first.entry.map.len(), 1);
    }

    #[test]
    fn a_retried_entry_carries_the_attempts_before_it_and_the_first_id() {
        let mut retry = taken(
            "9-1",
            &[("order", "42"), (ATTEMPT_FIELD, "2"), (ID_FIELD, "5-0")],
            1,
        );
        let identity = Identity::take_from(&mut retry).expect("an identity");
        assert_eq!(identity.attempt, 3);
        assert_eq!(identity.id.to_string(), "9-1");
        assert_eq!(identity.stable().to_string(), "5-0");
        // The user sees the entry's own fields only.
        assert_eq!(retry.entry.map.keys().collect::<Vec<_>>(), ["order"]);
    }

    #[test]
    fn a_claim_answer_becomes_entries_with_their_counts() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let answer = vec![
            bulk("1-0"),
            Value::Array(vec![bulk("a"), bulk("1")]),
            Value::Int(2),
            bulk("2-0"),
            Value::Array(vec![]),
            Value::Int(1),
        ];
        let entries = claimed(answer).taken;
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].entry.id, "1-0");
        assert_eq!(entries[0].count, 2);
        assert!(entries[0].entry.map.contains_key("a"));
        assert_eq!(entries[1].count, 1);
    }

    #[test]
    fn a_read_answer_becomes_first_deliveries_and_binary_field_names_are_set_apart() {
        let bulk = |bytes: &[u8]| Value::BulkString(bytes.to_vec());
        let entries = Value::Array(vec![
            Value::Array(vec![
                bulk(b"1-0"),
                Value::Array(vec![bulk(b"n"), bulk(b"1")]),
            ]),
            Value::Array(vec![
                bulk(b"2-0"),
                Value::Array(vec![bulk(&[0xff, 0xfe]), bulk(b"1")]),
            ]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk(b"s"), entries.clone()])]);
        let resp3 = Value::Map(vec![(bulk(b"s"), entries)]);
        for reply in [resp2, resp3] {
            let parsed = read(reply);
            assert_eq!(parsed.taken.len(), 1);
            assert_eq!(
                (parsed.taken[0].entry.id.as_str(), parsed.taken[0].count),
                ("1-0", 1)
            );
            assert_eq!(
                parsed.malformed,
                [(EntryId::parse("2-0").expect("an id"), 1)]
            );
        }
        assert!(read(Value::Nil).taken.is_empty());
    }
}
