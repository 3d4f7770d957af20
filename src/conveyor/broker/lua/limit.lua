#!lua
-- limit.lua: a claimed job asks its execution limits for leave to run. Over a concurrency
-- cap it is parked until a slot frees; over a rate it is delayed until the rate allows.
-- Neither counts as a failed attempt, nor as an attempt: the lease's attempt is taken back.
--
-- The rate is GCRA with a burst (ARGV[5], ARGV[6]), and it books: a job over the rate is
-- counted at once and delayed to its own turn (field 'rate_at'), so the next one gets the
-- turn after it. Delayed jobs thus keep the order they asked in, and none of them is
-- promoted just to be delayed again.
--
-- KEYS[1]  slots ZSET of the limit (job id -> lease deadline ms); its waiting LIST is
--          KEYS[1] .. ':waiting' (same hash tag)
-- KEYS[2]  rate STRING of the limit (GCRA theoretical arrival time, ms)
-- KEYS[3]  job HASH
-- KEYS[4]  active ZSET
-- KEYS[5]  delayed ZSET
-- KEYS[6]  marker ZSET
-- KEYS[7]  events STREAM
-- KEYS[8]  SET of ids the worker holds
--
-- ARGV[1]  job id
-- ARGV[2]  lease token (attempt)
-- ARGV[3]  concurrency cap (0 = none)
-- ARGV[4]  lease length ms (a slot lasts as long as the lease; renewals extend it)
-- ARGV[5]  rate: ms between runs (GCRA emission interval; 0 = no rate)
-- ARGV[6]  rate: burst, how many may run back to back
-- ARGV[7]  events stream MAXLEN
--
-- A job stepping aside is parked or delayed before it leaves 'active'.
--
-- Returns {code, due}, code one of (codes.py SCRIPT_CODES['limit']):
--    1 GRANTED      it may run
--    2 PARKED       over the concurrency cap: parked until a slot frees
--    3 DELAYED      over the rate: delayed until due (ms)
--   -1 STALE_LEASE  the job was leased again or is no longer active
-- @include now_ms
-- @include emit
-- @include wake

local slots, rate, jobkey, active = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local delayed, marker, events, held = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id, token, cap, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local interval, burst, maxlen = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local now = now_ms()

local f = redis.call('HMGET', jobkey, 'status', 'attempt', 'type', 'rate_at')
if f[1] ~= 'active' or f[2] ~= token then return {-1, 0} end
local booked = tonumber(f[4] or 0) or 0

local function step_aside(status, due, reason)
  redis.call('HSET', jobkey, 'status', 'delayed', 'due', due)
  redis.call('HINCRBY', jobkey, 'attempt', -1)
  redis.call('ZREM', active, id)
  redis.call('SREM', held, id)
  emit(events, maxlen, jobkey, id, 'deferred', 'delayed', now,
    {'type', f[3], 'attempt', token, 'reason', reason, 'due', due})
end

if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)  -- holders whose lease ran out
  if not redis.call('ZSCORE', slots, id) and redis.call('ZCARD', slots) >= cap then
    redis.call('RPUSH', slots .. ':waiting', id)
    step_aside('delayed', 0, 'concurrency limit')
    return {2, 0}
  end
end

local function delay_to(at)
  redis.call('ZADD', delayed, at, id)
  step_aside('delayed', at, 'rate limit')
  wake(marker, at)
  return {3, at}
end

if interval > 0 and booked > now then
  return delay_to(booked)  -- back before its turn (retried by hand, say): wait for it
elseif interval > 0 and booked == 0 then
  local tat = math.max(tonumber(redis.call('GET', rate) or now), now)
  local allow_at = tat + interval - interval * burst
  redis.call('SET', rate, tat + interval, 'PX', tat + interval - now + 1000)
  if now < allow_at then
    redis.call('HSET', jobkey, 'rate_at', allow_at)
    return delay_to(allow_at)
  end
end
if booked > 0 then redis.call('HDEL', jobkey, 'rate_at') end  -- its turn has come

if cap > 0 then
  redis.call('ZADD', slots, now + lease, id)
  redis.call('HSET', jobkey, 'limit', slots)
end
return {1, 0}
