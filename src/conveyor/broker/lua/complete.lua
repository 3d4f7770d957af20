-- complete.lua: mark one or more leased jobs of one queue completed, fenced by lease token.
--
-- KEYS[1]  active ZSET
-- KEYS[2]  events STREAM
-- KEYS[3]  SET of ids the completing worker holds
-- KEYS[4]  ready list, high priority   (for jobs that waited on a completed one)
-- KEYS[5]  ready list, normal priority
-- KEYS[6]  ready list, low priority
-- KEYS[7]  marker ZSET
--
-- ARGV[1]  events stream MAXLEN
-- ARGV[2]  retention of completed jobs in Redis, ms (the history store keeps them for good)
-- ARGV[3]  '1' to release the job's idempotency key now, '0' to let its TTL run
-- ARGV[4]  job key prefix "{<prefix>:<queue>}:job:" (same hash tag, so same Cluster slot)
-- ARGV[5]  the completions, a JSON array of [id, lease token (attempt), result (JSON text)]
--
-- The idempotency key's name is read from the job's 'ukey' field; it shares the hash tag.
--
-- Returns one code per job: 1 completed, -1 stale lease (the job was leased again or is no
-- longer active: the result is dropped), -2 job missing.
-- @include now_ms
-- @include emit
-- @include wake
-- @include ready_key
-- @include settle_children
-- @include free_slot

local active, events, held = KEYS[1], KEYS[2], KEYS[3]
local high, normal, low, marker = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local maxlen, retention, release_unique = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local prefix, done = ARGV[4], cjson.decode(ARGV[5])
local now = now_ms()
local q = {prefix = prefix, high = high, normal = normal, low = low, marker = marker,
           events = events, maxlen = maxlen, now = now, retention = retention}

local function complete(id, token, result)
  local jobkey = prefix .. id
  redis.call('SREM', held, id)
  local f = redis.call('HMGET', jobkey, 'status', 'attempt', 'type', 'worker', 'ukey')
  if not f[1] then return -2 end
  if f[1] ~= 'active' or f[2] ~= token then
    redis.call('HINCRBY', jobkey, 'stale', 1)
    return -1
  end
  redis.call('ZREM', active, id)
  free_slot(q, jobkey, id)
  redis.call('HSET', jobkey, 'status', 'completed', 'result', result, 'finished', now)
  redis.call('PEXPIRE', jobkey, retention)
  if release_unique == '1' and f[5] and f[5] ~= '' then redis.call('DEL', f[5]) end
  emit(events, maxlen, jobkey, id, 'completed', 'completed', now,
    {'type', f[3], 'attempt', token, 'worker', f[4], 'result', result})
  settle_children(q, id, true)
  return 1
end

local out = {}
for i = 1, #done do
  out[i] = complete(done[i][1], tostring(done[i][2]), done[i][3])
end
return out
