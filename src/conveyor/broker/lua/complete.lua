#!lua
-- complete.lua: mark one or more leased jobs of one queue completed, fenced by lease token.
--
-- KEYS[1]  active ZSET
-- KEYS[2]  events STREAM
-- KEYS[3]  SET of ids the completing worker holds
-- KEYS[4]  ready list, high priority   (for jobs that waited on a completed one)
-- KEYS[5]  ready list, normal priority
-- KEYS[6]  ready list, low priority
-- KEYS[7]  marker ZSET
-- KEYS[8]  dead ZSET (the queue context; completed jobs never go there)
--
-- ARGV[1]  events stream MAXLEN
-- ARGV[2]  retention policy "<result_ttl ms> <dead_ttl ms> <release unique key 0|1>"
-- ARGV[3]  job key prefix "{<prefix>:<queue>}:job:" (same hash tag, so same Cluster slot)
-- ARGV[4]  the completions, a JSON array of [id, lease token (attempt), result (JSON text)]
--
-- The idempotency key's name is read from the job's 'ukey' field; it shares the hash tag.
--
-- Returns one code per job (codes.py SCRIPT_CODES['complete']):
--    1 DONE         completed
--   -1 STALE_LEASE  the job was leased again or is no longer active: the result is dropped
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

local active, events, held = KEYS[1], KEYS[2], KEYS[3]
local high, normal, low, marker, dead = KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local maxlen, prefix, done = ARGV[1], ARGV[3], cjson.decode(ARGV[4])
local q = queue_context({prefix = prefix, high = high, normal = normal, low = low,
  marker = marker, events = events, maxlen = maxlen, dead = dead}, ARGV[2])
local now = q.now

local function complete(id, token, result)
  local jobkey = prefix .. id
  redis.call('SREM', held, id)
  local f = redis.call('HMGET', jobkey, 'status', 'attempt', 'type', 'worker', 'ukey',
    'limit', 'seq')
  if not f[1] then return -2 end
  if f[1] ~= 'active' or f[2] ~= token then
    redis.call('HINCRBY', jobkey, 'stale', 1)
    return -1
  end
  local seq = (tonumber(f[7]) or 0) + 1  -- counted here: one HSET for the state and seq
  redis.call('HSET', jobkey, 'status', 'completed', 'result', result, 'finished', now,
    'seq', seq)
  redis.call('ZREM', active, id)
  free_slot(q, jobkey, id, f[6])
  retire(q, jobkey, id, 'completed', f[5])
  emit(events, maxlen, jobkey, id, 'completed', 'completed', now,
    {'type', f[3], 'attempt', token, 'worker', f[4], 'result', result}, seq)
  settle_children(q, id, true)
  return 1
end

local out = {}
for i = 1, #done do
  out[i] = complete(done[i][1], tostring(done[i][2]), done[i][3])
end
return out
