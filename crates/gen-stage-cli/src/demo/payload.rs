//! The demo's jobs as broker payloads: 17 bytes each.

use std::time::Duration;

use gen_stage_pipeline::Message;

use super::work::Job;

/// A job as a payload: its id, its cost in microseconds, whether its first attempt
/// fails.
pub(crate) fn encode(job: &Job) -> [u8; 17] {
    let mut payload = [0; 17];
    payload[..8].copy_from_slice(&job.id.to_le_bytes());
    let micros = u64::try_from(job.cost.as_micros()).unwrap_or(u64::MAX);
    payload[8..16].copy_from_slice(&micros.to_le_bytes());
    payload[16] = u8::from(job.fails_first);
    payload
}

/// The job back from its payload; a payload that is not one (nothing the demo wrote)
/// becomes a job the ledger does not know, which the summary reports as missing.
fn decode(payload: &[u8]) -> Job {
    let field = |range: std::ops::Range<usize>| {
        payload
            .get(range)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_le_bytes)
    };
    match (field(0..8), field(8..16), payload.get(16)) {
        (Some(id), Some(micros), Some(&fails)) => Job {
            id,
            cost: Duration::from_micros(micros),
            fails_first: fails != 0,
        },
        _ => Job {
            id: u64::MAX,
            cost: Duration::ZERO,
            fails_first: false,
        },
    }
}

/// A broker's message as the demo's job, keeping its obligation, attempt and id;
/// `payload` finds the bytes in the broker's message.
pub(crate) fn decode_message<D>(
    message: Message<D>,
    payload: impl FnOnce(&D) -> &[u8],
) -> Message<Job> {
    let (data, metadata, ack) = message.into_parts();
    let job = Message::new(decode(payload(&data)), ack).with_attempt(metadata.attempt);
    match metadata.id {
        Some(id) => job.with_id(id),
        None => job,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_survives_its_payload_and_a_foreign_payload_is_no_job() {
        let job = Job {
            id: 42,
            cost: Duration::from_micros(31_500),
            fails_first: true,
        };
        let back = decode(&encode(&job));
        assert_eq!((back.id, back.cost, back.fails_first), (42, job.cost, true));
        assert_eq!(decode(b"not a job").id, u64::MAX);
    }
}
