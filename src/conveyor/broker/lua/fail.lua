#!lua
-- fail.lua: record a failed attempt of a leased job, then retry it later, send it to the
-- dead-letter queue, or end it canceled. Fenced by lease token.
--
-- KEYS[1]  job HASH
-- KEYS[2]  active ZSET
-- KEYS[3]  delayed ZSET
-- KEYS[4]  dead ZSET
-- KEYS[5]  events STREAM
-- KEYS[6]  marker ZSET
-- KEYS[7]  SET of ids the worker holds
-- KEYS[8]  ready list, high priority   (for jobs that waited on this one)
-- KEYS[9]  ready list, normal priority
-- KEYS[10] ready list, low priority
--
-- ARGV[1]  job id
-- ARGV[2]  lease token (attempt)
-- ARGV[3]  error of this attempt (JSON: type, message, traceback, worker, started, finished)
-- ARGV[4]  retry delay in ms; -1 = no retry (non-retryable error); -2 = end canceled
-- ARGV[5]  events stream MAXLEN
-- ARGV[6]  retention policy "<result_ttl ms> <dead_ttl ms> <release unique key 0|1>"
-- ARGV[7]  job key prefix "{<prefix>:<queue>}:job:" (for the jobs that wait on this one)
--
-- The idempotency key's name is read from the job's 'ukey' field; it shares the hash tag.
-- The job joins its next structure (delayed, dead) before it leaves 'active'.
--
-- Returns {code, due}, code one of (codes.py SCRIPT_CODES['fail']):
--    1 RETRYING     due = ms of the next try
--    2 DEAD         in the dead-letter queue
--    3 CANCELED     ended canceled
--   -1 STALE_LEASE  the job was leased again or is no longer active
--   -2 MISSING      the job hash is gone
-- @include now_ms
-- @include emit
-- @include wake
-- @include ready_key
-- @include queue_context
-- @include release_unique
-- @include retire
-- @include settle_children
-- @include free_slot

local jobkey, active, delayed, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local events, marker, held = KEYS[5], KEYS[6], KEYS[7]
local high, normal, low = KEYS[8], KEYS[9], KEYS[10]
local id, token, err, delay = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local maxlen = ARGV[5]
local q = queue_context({prefix = ARGV[7], high = high, normal = normal, low = low,
  marker = marker, events = events, maxlen = maxlen, dead = dead}, ARGV[6])
local now = q.now

redis.call('SREM', held, id)
local f = redis.call('HMGET', jobkey, 'status', 'attempt', 'type', 'max_attempts', 'worker',
  'ukey')
if not f[1] then return {-2, 0} end
if f[1] ~= 'active' or f[2] ~= token then
  redis.call('HINCRBY', jobkey, 'stale', 1)
  return {-1, 0}
end
local common = {'type', f[3], 'attempt', token, 'worker', f[5], 'error', err}

-- The job has left 'active' (after being written where it goes): give up its slot.
local function leave_active()
  redis.call('ZREM', active, id)
  free_slot(q, jobkey, id)
end

if delay == -2 then
  redis.call('HSET', jobkey, 'status', 'canceled', 'finished', now, 'error', err)
  leave_active()
  retire(q, jobkey, id, 'canceled', f[6])
  emit(events, maxlen, jobkey, id, 'canceled', 'canceled', now, common)
  settle_children(q, id, false)
  return {3, 0}
end

local failures = redis.call('HINCRBY', jobkey, 'failures', 1)
redis.call('HSET', jobkey, 'error', err, 'error:' .. token, err)
if delay >= 0 and failures < tonumber(f[4]) then
  local due = now + delay
  redis.call('HSET', jobkey, 'status', 'retrying', 'due', due)
  redis.call('ZADD', delayed, due, id)
  leave_active()
  wake(marker, due)
  common[#common + 1] = 'due'
  common[#common + 1] = due
  emit(events, maxlen, jobkey, id, 'retrying', 'retrying', now, common)
  return {1, due}
end

redis.call('HSET', jobkey, 'status', 'dead', 'finished', now)
retire(q, jobkey, id, 'dead', f[6])
leave_active()
emit(events, maxlen, jobkey, id, 'dead', 'dead', now, common)
settle_children(q, id, false)
return {2, 0}
