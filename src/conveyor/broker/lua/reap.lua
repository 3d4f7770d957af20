-- reap.lua: requeue jobs whose lease ran out, or that a dead worker held; a job whose
-- worker died too often goes to the dead-letter queue as a poison pill.
--
-- KEYS[1]  active ZSET
-- KEYS[2]  ready list, high priority
-- KEYS[3]  ready list, normal priority
-- KEYS[4]  ready list, low priority
-- KEYS[5]  dead ZSET
-- KEYS[6]  marker ZSET
-- KEYS[7]  events STREAM
-- KEYS[8]  SET of ids held by the dead worker (a placeholder when reaping expired leases only)
--
-- ARGV[1]  job key prefix "{<prefix>:<queue>}:job:" (same hash tag, so same Cluster slot)
-- ARGV[2]  events stream MAXLEN
-- ARGV[3]  poison-pill threshold: worker deaths after which the job is dead
-- ARGV[4]  id of the dead worker ('' = expired leases only)
-- ARGV[5]  most expired leases to handle in this call
--
-- Returns {requeued, dead}.
-- @include now_ms
-- @include emit
-- @include wake
-- @include ready_key
-- @include settle_children
-- @include free_slot

local active, high, normal, low = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead, marker, events, held = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local prefix, maxlen, threshold = ARGV[1], ARGV[2], tonumber(ARGV[3])
local dead_worker, limit = ARGV[4], tonumber(ARGV[5])
local now = now_ms()
local requeued, buried = 0, 0
local q = {prefix = prefix, high = high, normal = normal, low = low, marker = marker,
           events = events, maxlen = maxlen, now = now}

local function reap(id, reason)
  local jobkey = prefix .. id
  local f = redis.call('HMGET', jobkey, 'status', 'worker', 'type', 'priority', 'attempt')
  if f[1] ~= 'active' or not redis.call('ZSCORE', active, id) then return end
  if dead_worker ~= '' and reason == 'worker lost' and f[2] ~= dead_worker then return end
  redis.call('ZREM', active, id)
  free_slot(q, jobkey, id)
  local deaths = redis.call('HINCRBY', jobkey, 'deaths', 1)
  local info = {'type', f[3], 'attempt', f[5], 'worker', f[2], 'reason', reason}
  if deaths >= threshold then
    local err = cjson.encode({type = 'PoisonPill', message = 'poison pill: its worker died ' ..
      deaths .. ' times while running it (last: ' .. reason .. ')', worker = f[2]})
    redis.call('HSET', jobkey, 'status', 'dead', 'finished', now, 'error', err,
      'error:' .. f[5], err)
    redis.call('ZADD', dead, now, id)
    info[#info + 1] = 'error'
    info[#info + 1] = err
    emit(events, maxlen, jobkey, id, 'dead', 'dead', now, info)
    settle_children(q, id, false)
    buried = buried + 1
  else
    redis.call('HSET', jobkey, 'status', 'queued')
    redis.call('RPUSH', ready_key(high, normal, low, f[4]), id)
    emit(events, maxlen, jobkey, id, 'requeued', 'queued', now, info)
    requeued = requeued + 1
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0, limit)) do
  reap(id, 'lease expired')
end
if dead_worker ~= '' then
  for _, id in ipairs(redis.call('SMEMBERS', held)) do reap(id, 'worker lost') end
  redis.call('DEL', held)
end
if requeued > 0 then wake(marker, 0) end
return {requeued, buried}
