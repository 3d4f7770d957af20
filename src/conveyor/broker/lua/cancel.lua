-- cancel.lua: cancel a job. A queued or delayed job ends canceled at once; for an active job
-- the cancellation is requested and its worker, told on a channel, stops the handler.
--
-- KEYS[1]  job HASH
-- KEYS[2]  ready list, high priority
-- KEYS[3]  ready list, normal priority
-- KEYS[4]  ready list, low priority
-- KEYS[5]  delayed ZSET
-- KEYS[6]  events STREAM
-- KEYS[7]  marker ZSET (for jobs that waited on this one and may run anyway)
--
-- ARGV[1]  job id
-- ARGV[2]  events stream MAXLEN
-- ARGV[3]  retention of canceled jobs in Redis, ms
-- ARGV[4]  '1' to release the idempotency key, '0' to let its TTL run
-- ARGV[5]  cancel channel (PUBLISH target for active jobs; a channel, not a key)
-- ARGV[6]  job key prefix "{<prefix>:<queue>}:job:" (for the jobs that wait on this one)
--
-- The idempotency key's name is read from the job's 'ukey' field; it shares the hash tag.
--
-- Returns {code, status}: 1 canceled, 2 cancellation requested (active), -2 job missing,
-- -3 the job is already finished (status says how).
-- @include now_ms
-- @include emit
-- @include ready_key
-- @include wake
-- @include settle_children

local jobkey, high, normal, low = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayed, events, marker = KEYS[5], KEYS[6], KEYS[7]
local id, maxlen, retention, release_unique, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local now = now_ms()
local q = {prefix = ARGV[6], high = high, normal = normal, low = low, marker = marker,
           events = events, maxlen = maxlen, now = now, retention = retention}

local f = redis.call('HMGET', jobkey, 'status', 'type', 'priority', 'attempt', 'ukey')
local status = f[1]
if not status then return {-2, ''} end
if status == 'active' then
  redis.call('HSET', jobkey, 'cancel', '1')
  emit(events, maxlen, jobkey, id, 'cancel_requested', 'active', now, {'type', f[2], 'attempt', f[4]})
  redis.call('PUBLISH', channel, id)
  return {2, status}
end
if status == 'queued' then
  redis.call('LREM', ready_key(high, normal, low, f[3]), 1, id)
elseif status == 'delayed' or status == 'retrying' then
  redis.call('ZREM', delayed, id)
else
  return {-3, status}
end
redis.call('HSET', jobkey, 'status', 'canceled', 'finished', now)
redis.call('PEXPIRE', jobkey, retention)
if release_unique == '1' and f[5] and f[5] ~= '' then redis.call('DEL', f[5]) end
emit(events, maxlen, jobkey, id, 'canceled', 'canceled', now, {'type', f[2], 'attempt', f[4]})
settle_children(q, id, false)
return {1, 'canceled'}
