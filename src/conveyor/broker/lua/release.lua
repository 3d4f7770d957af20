#!lua
-- release.lua: hand a leased job back to the head of its ready list without counting a
-- failure (graceful shutdown past the grace period, or a job held back by a limit).
--
-- KEYS[1]  job HASH
-- KEYS[2]  active ZSET
-- KEYS[3]  ready list, high priority
-- KEYS[4]  ready list, normal priority
-- KEYS[5]  ready list, low priority
-- KEYS[6]  marker ZSET
-- KEYS[7]  events STREAM
-- KEYS[8]  SET of ids the worker holds
--
-- ARGV[1]  job id
-- ARGV[2]  lease token (attempt)
-- ARGV[3]  events stream MAXLEN
-- ARGV[4]  reason (free text, recorded in the event)
-- ARGV[5]  job key prefix "{<prefix>:<queue>}:job:" (for a job parked on a freed slot)
--
-- The job is pushed on its ready list before it leaves 'active'.
--
-- Returns (codes.py SCRIPT_CODES['release']):
--    1 DONE         released
--   -1 STALE_LEASE  the job was leased again or is no longer active
--   -2 MISSING      the job hash is gone
-- @include now_ms
-- @include emit
-- @include wake
-- @include ready_key
-- @include free_slot

local jobkey, active, high, normal, low = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local marker, events, held = KEYS[6], KEYS[7], KEYS[8]
local id, token, maxlen, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local q = {prefix = ARGV[5], high = high, normal = normal, low = low, marker = marker,
           events = events, maxlen = maxlen, now = now}

redis.call('SREM', held, id)
local f = redis.call('HMGET', jobkey, 'status', 'attempt', 'type', 'priority')
if not f[1] then return -2 end
if f[1] ~= 'active' or f[2] ~= token then return -1 end
redis.call('HINCRBY', jobkey, 'releases', 1)
redis.call('HSET', jobkey, 'status', 'queued')
redis.call('RPUSH', ready_key(high, normal, low, f[4]), id)
redis.call('ZREM', active, id)
free_slot(q, jobkey, id)
wake(marker, 0)
emit(events, maxlen, jobkey, id, 'released', 'queued', now,
  {'type', f[3], 'attempt', token, 'reason', reason})
return 1
