-- complete.lua: mark one or more leased jobs of one queue completed, fenced by lease token.
--
-- KEYS[1]  active ZSET
-- KEYS[2]  events STREAM
-- KEYS[3]  SET of ids the completing worker holds
-- then for job i: KEYS[2 + 2i] job HASH, KEYS[3 + 2i] unique key (placeholder if none)
--
-- ARGV[1]  events stream MAXLEN
-- ARGV[2]  retention of completed jobs in Redis, ms (the history store keeps them for good)
-- ARGV[3]  '1' to release the job's idempotency key now, '0' to let its TTL run
-- then for job i, 3 values from ARGV[4 + 3(i-1)]: id, lease token (attempt), result (JSON)
--
-- Returns one code per job: 1 completed, -1 stale lease (the job was leased again or is no
-- longer active: the result is dropped), -2 job missing.
-- @include now_ms
-- @include emit

local active, events, held = KEYS[1], KEYS[2], KEYS[3]
local maxlen, retention, release_unique = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out = {}
local n = (#ARGV - 3) / 3

for i = 1, n do
  local a = 3 + 3 * (i - 1)
  local id, token, result = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local jobkey, uniquekey = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  redis.call('SREM', held, id)
  local f = redis.call('HMGET', jobkey, 'status', 'attempt', 'type', 'worker')
  if not f[1] then
    out[i] = -2
  elseif f[1] ~= 'active' or f[2] ~= token then
    redis.call('HINCRBY', jobkey, 'stale', 1)
    out[i] = -1
  else
    redis.call('ZREM', active, id)
    redis.call('HSET', jobkey, 'status', 'completed', 'result', result, 'finished', now)
    redis.call('PEXPIRE', jobkey, retention)
    if release_unique == '1' then redis.call('DEL', uniquekey) end
    emit(events, maxlen, jobkey, id, 'completed', 'completed', now,
      {'type', f[3], 'attempt', token, 'worker', f[4], 'result', result})
    out[i] = 1
  end
end
return out
