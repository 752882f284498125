//! The Lua scripts that do at the server, atomically, what would race as separate
//! commands: an outcome only for an entry this consumer still holds, a retry's copy
//! with its acknowledgement, a claim with its delivery counts.
//!
//! An entry is this consumer's when the group's pending list says it is, with the
//! delivery count it had when it was read: another instance that claimed it (its
//! lease ran out) raised the count, and settles it itself.

use std::sync::LazyLock;

use redis::Script;

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
/// KEYS: stream, delayed set, dead-letter stream. ARGV: group, consumer, delete on
/// ack (`1`), copy rejects (`1`), lease in ms, then six per entry: operation (`a`
/// ack, `r` retry, `d` reject, `l` release), id, delivery count, attempt, stable id,
/// and the retry's delay in ms or the reject's error.
const SETTLE: &str = r"
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local delete, copy_rejects, lease = ARGV[3] == '1', ARGV[4] == '1', ARGV[5]
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
for i = 6, #ARGV, 6 do
  local op, id, count, attempt, origin, extra =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local code = 0
  if owned(stream, group, consumer, id, count) then
    code = 1
    if op == 'l' then
      redis.call('XCLAIM', stream, group, consumer, 0, id, 'IDLE', lease, 'JUSTID')
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

/// Claims entries idle for at least the lease, whoever held them (`XAUTOCLAIM`),
/// with the delivery count each has now; answers the cursor to go on from, then
/// `id, fields, count` per entry.
///
/// KEYS: stream. ARGV: group, consumer, lease in ms, cursor, the most to claim.
const CLAIM: &str = r"
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local claimed = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[3], ARGV[4],
  'COUNT', ARGV[5])
local out = {claimed[1]}
for _, entry in ipairs(claimed[2]) do
  if type(entry) == 'table' then
    local pending = redis.call('XPENDING', stream, group, entry[1], entry[1], 1)[1]
    out[#out + 1] = entry[1]
    out[#out + 1] = entry[2]
    out[#out + 1] = pending[4]
  end
end
return out
";

/// Makes every entry pending for the consumer claimable at once (idle for the
/// lease), keeping its delivery count: what a restarted instance held before it
/// stopped. Answers how many.
///
/// KEYS: stream. ARGV: group, consumer, lease in ms.
const RELEASE_ALL: &str = r"
local stream, group, consumer, lease = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local after, released = '-', 0
while true do
  local pending = redis.call('XPENDING', stream, group, after, '+', 1000, consumer)
  if #pending == 0 then return released end
  local ids = {}
  for i, entry in ipairs(pending) do ids[i] = entry[1] end
  in_chunks({'XCLAIM', stream, group, consumer, 0}, ids, {'IDLE', lease, 'JUSTID'})
  released = released + #ids
  after = '(' .. ids[#ids]
end
";

/// Renews the entries the consumer still holds (`XCLAIM ... JUSTID` restarts their
/// idle time, keeping their delivery count); answers the ids renewed.
///
/// KEYS: stream. ARGV: group, consumer, then id and delivery count per entry.
const RENEW: &str = r"
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local renewed = {}
for i = 3, #ARGV, 2 do
  if owned(stream, group, consumer, ARGV[i], ARGV[i + 1]) then
    renewed[#renewed + 1] = ARGV[i]
  end
end
in_chunks({'XCLAIM', stream, group, consumer, 0}, renewed, {'JUSTID'})
return renewed
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
pub(crate) static HOLD_NAME_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(HOLD_NAME));
pub(crate) static LET_NAME_GO_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LET_NAME_GO));
pub(crate) static FORGET_IDLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FORGET_IDLE));
