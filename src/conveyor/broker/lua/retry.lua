#!lua
-- retry.lua: put a dead or canceled job back on its ready list with a fresh attempt budget.
--
-- KEYS[1]  job HASH
-- KEYS[2]  dead ZSET
-- KEYS[3]  ready list, high priority
-- KEYS[4]  ready list, normal priority
-- KEYS[5]  ready list, low priority
-- KEYS[6]  marker ZSET
-- KEYS[7]  events STREAM
--
-- ARGV[1]  job id
-- ARGV[2]  events stream MAXLEN
--
-- The job is pushed on its ready list before it leaves the dead ZSET.
--
-- Returns {code, status}, code one of (codes.py SCRIPT_CODES['retry']):
--    1 DONE         queued again
--   -2 MISSING      the job hash is gone
--   -3 WRONG_STATE  the job is not dead or canceled (status says what it is)
-- @include now_ms
-- @include emit
-- @include wake
-- @include ready_key

local jobkey, dead, high, normal, low = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local marker, events = KEYS[6], KEYS[7]
local id, maxlen = ARGV[1], ARGV[2]
local now = now_ms()

local f = redis.call('HMGET', jobkey, 'status', 'type', 'priority', 'attempt')
if not f[1] then return {-2, ''} end
if f[1] ~= 'dead' and f[1] ~= 'canceled' then return {-3, f[1]} end
redis.call('PERSIST', jobkey)
redis.call('HDEL', jobkey, 'cancel', 'finished')
redis.call('HSET', jobkey, 'status', 'queued', 'failures', 0, 'deaths', 0, 'due', now)
redis.call('LPUSH', ready_key(high, normal, low, f[3]), id)
redis.call('ZREM', dead, id)
wake(marker, 0)
emit(events, maxlen, jobkey, id, 'retried', 'queued', now, {'type', f[2], 'attempt', f[4]})
return {1, 'queued'}
