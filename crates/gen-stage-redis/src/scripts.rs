//! The Lua scripts that do at the server, atomically, what would race as separate
//! commands: an outcome only for an entry this consumer still holds, a retry's copy
//! with its acknowledgement, a claim with its delivery counts.
//!
//! An entry is this consumer's when the group's pending list says it is, with the
//! delivery count it had when it was read: another instance that claimed it (its
//! lease ran out) raised the count, and settles it itself.

use std::sync::LazyLock;

use redis::Script;

/// The group's consumer that released entries are handed to, idle for a lease,
/// until a sweep claims them: so they no longer count against the consumer that
/// let them go.
pub(crate) const RELEASED_CONSUMER: &str = "gen-stage-released";

/// `owned(stream, group, consumer, id, count)`: whether the entry is pending for the
/// consumer with that delivery count.
const OWNED: &str = r"
local function owned(stream, group, consumer, id, count)
  local pending = redis.call('XPENDING', stream, group, id, id, 1)[1]
  return pending ~= nil and pending[2] == consumer and pending[4] == tonumber(count)
end
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local function in_chunks(head, ids, tail)
  for first = 1, #ids, 1000 do
    local args = {}
    for _, arg in ipairs(head) do args[#args + 1] = arg end
    for i = first, math.min(first + 999, #ids) do args[#args + 1] = ids[i] end
    for _, arg in ipairs(tail or {}) do args[#args + 1] = arg end
    redis.call(unpack(args))
  end
end
";

/// Outcomes checked against the pending list, each answered with a code: 0 voided
/// (no longer this consumer's), 1 done, 2 done but the entry was gone from the
/// stream (nothing to copy).
///
/// A release hands the entry to the group's consumer for released entries, idle
/// for a lease: the next sweep of any instance claims it, and it no longer counts
/// against this consumer.
///
/// KEYS: stream, delayed set, dead-letter stream. ARGV: group, consumer, delete on
/// ack (`1`), copy rejects (`1`), lease in ms, the released entries' consumer, then
/// six per entry: operation (`a` ack, `r` retry, `d` reject, `l` release), id,
/// delivery count, attempt, stable id, and the retry's delay in ms or the reject's
/// error.
const SETTLE: &str = r"
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local delete, copy_rejects, lease = ARGV[3] == '1', ARGV[4] == '1', ARGV[5]
local released = ARGV[6]
local now = now_ms()
local codes, acked = {}, {}
local function fields_of(id)
  local entry = redis.call('XRANGE', stream, id, id)[1]
  if entry == nil then return nil end
  local kept = {}
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] ~= 'gen-stage-id' and fields[i] ~= 'gen-stage-attempt' then
      kept[#kept + 1] = fields[i]
      kept[#kept + 1] = fields[i + 1]
    end
  end
  return kept
end
for i = 7, #ARGV, 6 do
  local op, id, count, attempt, origin, extra =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local code = 0
  if owned(stream, group, consumer, id, count) then
    code = 1
    if op == 'l' then
      redis.call('XCLAIM', stream, group, released, 0, id, 'IDLE', lease, 'JUSTID')
    else
      if op == 'r' or (op == 'd' and copy_rejects) then
        local fields = fields_of(id)
        if fields == nil then
          code = 2
        elseif op == 'r' then
          local due = string.format('%.0f', now + tonumber(extra))
          redis.call('ZADD', delayed, due, cmsgpack.pack(id, origin, attempt, fields))
        else
          for _, field in ipairs({'gen-stage-id', origin, 'gen-stage-attempt', attempt,
              'gen-stage-stream', stream, 'gen-stage-group', group, 'gen-stage-error', extra}) do
            fields[#fields + 1] = field
          end
          redis.call('XADD', dead, '*', unpack(fields))
        end
      end
      acked[#acked + 1] = id
    end
  end
  codes[#codes + 1] = code
end
in_chunks({'XACK', stream, group}, acked)
if delete then in_chunks({'XDEL', stream}, acked) end
return codes
";

/// Adds retries that are due back to the stream (with their stable id and the
/// attempts before), oldest first; answers how many, and in how many ms the next is
/// due (-1: none waits).
///
/// KEYS: stream, delayed set. ARGV: the most to add.
const PROMOTE: &str = r"
local stream, delayed = KEYS[1], KEYS[2]
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', string.format('%.0f', now),
  'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local _, origin, attempt, fields = cmsgpack.unpack(member)
  fields[#fields + 1] = 'gen-stage-id'
  fields[#fields + 1] = origin
  fields[#fields + 1] = 'gen-stage-attempt'
  fields[#fields + 1] = attempt
  redis.call('XADD', stream, '*', unpack(fields))
  redis.call('ZREM', delayed, member)
end
local next = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')[2]
local wait = -1
if next ~= nil then wait = math.max(0, tonumber(next) - now) end
return {#due, wait}
";

/// Claims entries idle for at least the lease, whoever held them: a page of the
/// pending list filtered at the server (`XPENDING ... IDLE`), claimed with the same
/// minimum idle time (`XCLAIM`, so an entry renewed meanwhile stays), each with the
/// delivery count it has now. Answers where the sweep goes on (`-`: it is over),
/// then `id, fields, count` per entry.
///
/// KEYS: stream. ARGV: group, consumer, lease in ms, where to start (`-`, or `(id`),
/// the most to claim (at most 1000).
const CLAIM: &str = r"
local stream, group, consumer, lease = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local count = tonumber(ARGV[5])
local idle = redis.call('XPENDING', stream, group, 'IDLE', lease, ARGV[4], '+', count)
local out = {'-'}
if #idle == 0 then return out end
if #idle == count then out[1] = '(' .. idle[#idle][1] end
local ids = {}
for i, entry in ipairs(idle) do ids[i] = entry[1] end
for _, entry in ipairs(redis.call('XCLAIM', stream, group, consumer, lease, unpack(ids))) do
  if type(entry) == 'table' then
    local pending = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)[1]
    out[#out + 1] = entry[1]
    out[#out + 1] = entry[2]
    out[#out + 1] = pending[4]
  end
end
return out
";

/// Hands every entry pending for the consumer (what a restarted instance held
/// before it stopped, or what a closing one still holds) to the released entries'
/// consumer, idle for a lease and keeping its delivery count, so the next sweep of
/// any instance claims it. Answers how many.
///
/// KEYS: stream. ARGV: group, consumer, lease in ms, the released entries' consumer.
const RELEASE_ALL: &str = r"
local stream, group, consumer, lease = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local released = 0
while true do
  local pending = redis.call('XPENDING', stream, group, '-', '+', 1000, consumer)
  if #pending == 0 then return released end
  local ids = {}
  for i, entry in ipairs(pending) do ids[i] = entry[1] end
  in_chunks({'XCLAIM', stream, group, ARGV[4], 0}, ids, {'IDLE', lease, 'JUSTID'})
  released = released + #ids
end
";

/// Renews the entries the consumer still holds with the same delivery count
/// (`XCLAIM ... JUSTID` restarts their idle time, keeping the count). Entries
/// trimmed from the stream meanwhile are acked instead. Answers the positions (from
/// 1, in the order given) of the entries renewed, then of those found trimmed.
///
/// KEYS: stream. ARGV: group, consumer, then id and delivery count per entry.
const RENEW: &str = r"
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local renewed, renewed_at, trimmed, trimmed_at = {}, {}, {}, {}
for i = 3, #ARGV, 2 do
  local at = (i - 1) / 2
  if owned(stream, group, consumer, ARGV[i], ARGV[i + 1]) then
    if redis.call('XRANGE', stream, ARGV[i], ARGV[i])[1] == nil then
      trimmed[#trimmed + 1] = ARGV[i]
      trimmed_at[#trimmed_at + 1] = at
    else
      renewed[#renewed + 1] = ARGV[i]
      renewed_at[#renewed_at + 1] = at
    end
  end
end
in_chunks({'XCLAIM', stream, group, consumer, 0}, renewed, {'JUSTID'})
in_chunks({'XACK', stream, group}, trimmed)
return {renewed_at, trimmed_at}
";

/// Acks entries and deletes them from the stream (what `delete_on_ack` asks), in
/// one script: a `MULTI` transaction would need rights the guide does not ask for.
/// Answers how many were acked.
///
/// KEYS: stream. ARGV: group, then the ids.
const ACK_AND_DELETE: &str = r"
local acked = 0
for first = 2, #ARGV, 1000 do
  local ids = {}
  for i = first, math.min(first + 999, #ARGV) do ids[#ids + 1] = ARGV[i] end
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
end
return acked
";

/// Takes or keeps the consumer name for this process: set to its token with the
/// lease as expiry, unless another token holds it. Answers 1 if held.
///
/// KEYS: owner key. ARGV: token, lease in ms.
const HOLD_NAME: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Gives the consumer name up, if this process holds it.
///
/// KEYS: owner key. ARGV: token.
const LET_NAME_GO: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Removes the group's other consumers that have nothing pending and have not read
/// for the given time; answers how many.
///
/// KEYS: stream. ARGV: group, idle ms, own consumer.
const FORGET_IDLE: &str = r"
local removed = 0
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local consumer = {}
  for i = 1, #info, 2 do consumer[info[i]] = info[i + 1] end
  if consumer.name ~= ARGV[3] and consumer.pending == 0
      and consumer.idle > tonumber(ARGV[2]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], consumer.name)
    removed = removed + 1
  end
end
return removed
";

fn with_helpers(body: &str) -> Script {
    Script::new(&format!("{OWNED}\n{body}"))
}

pub(crate) static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_helpers(SETTLE));
pub(crate) static PROMOTE_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_helpers(PROMOTE));
pub(crate) static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_helpers(CLAIM));
pub(crate) static RELEASE_ALL_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| with_helpers(RELEASE_ALL));
pub(crate) static RENEW_SCRIPT: LazyLock<Script> = LazyLock::new(|| with_helpers(RENEW));
pub(crate) static ACK_AND_DELETE_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(ACK_AND_DELETE));
pub(crate) static HOLD_NAME_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(HOLD_NAME));
pub(crate) static LET_NAME_GO_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LET_NAME_GO));
pub(crate) static FORGET_IDLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FORGET_IDLE));
