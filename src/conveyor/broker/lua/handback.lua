#!lua
-- handback.lua: give a leased job back, unrun, because the worker that claimed it has no
-- handler for its type (apps that share a queue each register their own types). The lease's
-- attempt is taken back, so no attempt is spent and no failure recorded, and the job waits
-- a hold-off in the delayed ZSET: the worker does not claim it again at once, and a worker
-- that has the type takes it. The hold-off doubles with each hand-back of the job, up to a
-- cap, so jobs no live worker can run cost little while they wait for one. Once due, this
-- worker leaves the job to others for a while (fields 'avoid', 'avoid_until'; see claim.lua).
--
-- KEYS[1]  job HASH
-- KEYS[2]  active ZSET
-- KEYS[3]  delayed ZSET
-- KEYS[4]  marker ZSET
-- KEYS[5]  events STREAM
-- KEYS[6]  SET of ids the worker holds
--
-- ARGV[1]  job id
-- ARGV[2]  lease token (attempt)
-- ARGV[3]  first hold-off ms
-- ARGV[4]  longest hold-off ms
-- ARGV[5]  jitter, 0 to 1: the hold-off is stretched by up to this fraction of itself
-- ARGV[6]  events stream MAXLEN
-- ARGV[7]  worker id (recorded in the event, and avoided)
-- ARGV[8]  ms past the due time during which this worker does not take the job again
--
-- The job joins the delayed ZSET before it leaves 'active'.
--
-- Returns {code, due}, code one of (codes.py SCRIPT_CODES['handback']):
--    1 DONE         handed back; due = ms when it is offered again
--   -1 STALE_LEASE  the job was leased again or is no longer active
--   -2 MISSING      the job hash is gone
-- @include now_ms
-- @include emit
-- @include wake

local jobkey, active, delayed, marker = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local events, held = KEYS[5], KEYS[6]
local id, token, first, cap = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local jitter, maxlen, worker, avoid_ms = tonumber(ARGV[5]), ARGV[6], ARGV[7], tonumber(ARGV[8])
local now = now_ms()

redis.call('SREM', held, id)
local f = redis.call('HMGET', jobkey, 'status', 'attempt', 'type')
if not f[1] then return {-2, 0} end
if f[1] ~= 'active' or f[2] ~= token then return {-1, 0} end
local times = redis.call('HINCRBY', jobkey, 'handbacks', 1)
local hold = math.min(cap, first * 2 ^ math.min(times - 1, 20))
local due = now + math.floor(hold * (1 + jitter))
redis.call('HSET', jobkey, 'status', 'delayed', 'due', due, 'avoid', worker,
  'avoid_until', due + avoid_ms)
redis.call('HINCRBY', jobkey, 'attempt', -1)
redis.call('ZADD', delayed, due, id)
redis.call('ZREM', active, id)
wake(marker, due)
emit(events, maxlen, jobkey, id, 'deferred', 'delayed', now,
  {'type', f[3], 'attempt', token, 'worker', worker, 'due', due,
   'reason', 'no handler'})
return {1, due}
