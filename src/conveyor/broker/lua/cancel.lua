#!lua
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
-- KEYS[8]  dead ZSET (the queue context)
--
-- ARGV[1]  job id
-- ARGV[2]  events stream MAXLEN
-- ARGV[3]  retention policy "<result_ttl ms> <dead_ttl ms> <release unique key 0|1>"
-- ARGV[4]  cancel channel (PUBLISH target for active jobs; a channel, not a key)
-- ARGV[5]  job key prefix "{<prefix>:<queue>}:job:" (for the jobs that wait on this one)
--
-- The idempotency key's name is read from the job's 'ukey' field; it shares the hash tag.
--
-- Returns {code, status}, code one of (codes.py SCRIPT_CODES['cancel']):
--    1 CANCELED     canceled now
--    2 REQUESTED    the job is active: cancellation requested
--   -2 MISSING      the job hash is gone
--   -3 WRONG_STATE  the job is already finished (status says how)
-- @include now_ms
-- @include emit
-- @include ready_key
-- @include wake
-- @include queue_context
-- @include release_unique
-- @include retire
-- @include settle_children

local jobkey, high, normal, low = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayed, events, marker, dead = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id, maxlen, channel = ARGV[1], ARGV[2], ARGV[4]
local q = queue_context({prefix = ARGV[5], high = high, normal = normal, low = low,
  marker = marker, events = events, maxlen = maxlen, dead = dead}, ARGV[3])
local now = q.now

local f = redis.call('HMGET', jobkey, 'status', 'type', 'priority', 'attempt', 'ukey')
local status = f[1]
if not status then return {-2, ''} end
if status == 'active' then
  redis.call('HSET', jobkey, 'cancel', '1')
  emit(events, maxlen, jobkey, id, 'cancel_requested', 'active', now, {'type', f[2], 'attempt', f[4]})
  redis.call('PUBLISH', channel, id)
  return {2, status}
end
if status ~= 'queued' and status ~= 'delayed' and status ~= 'retrying' then
  return {-3, status}
end
redis.call('HSET', jobkey, 'status', 'canceled', 'finished', now)
if status == 'queued' then
  redis.call('LREM', ready_key(high, normal, low, f[3]), 1, id)
else
  redis.call('ZREM', delayed, id)
end
retire(q, jobkey, id, 'canceled', f[5])
emit(events, maxlen, jobkey, id, 'canceled', 'canceled', now, {'type', f[2], 'attempt', f[4]})
settle_children(q, id, false)
return {1, 'canceled'}
