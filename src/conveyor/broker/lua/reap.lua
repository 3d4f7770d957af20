#!lua
-- reap.lua: requeue jobs whose lease ran out, or that a dead worker held; a job whose
-- worker died too often goes to the dead-letter queue as a poison pill. An 'active' entry
-- with no leased job behind it (the hash expired or was deleted, or the job moved on) is
-- dropped without an event, so such entries can never fill the window and hide real
-- expired leases behind them.
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
-- ARGV[3]  poison-pill threshold: worker deaths (field 'deaths': its worker's heartbeat
--          stopped) or stalls (field 'stalls': its lease ran out under a live worker) after
--          which the job is dead
-- ARGV[4]  id of the dead worker ('' = expired leases only)
-- ARGV[5]  most expired leases to requeue or bury in this call
-- ARGV[6]  retention policy "<result_ttl ms> <dead_ttl ms> <release unique key 0|1>"
--
-- Every expired entry looked at leaves 'active' (requeued, buried or dropped), so the scan
-- moves on; it looks at no more than 10 x ARGV[5] entries per call. A job joins its ready
-- list or the dead ZSET before it leaves 'active'.
--
-- Returns data (codes.py DATA_REPLIES): {requeued, dead, dropped}.
-- @include now_ms
-- @include emit
-- @include wake
-- @include ready_key
-- @include queue_context
-- @include release_unique
-- @include retire
-- @include settle_children
-- @include free_slot

local active, high, normal, low = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dead, marker, events, held = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local prefix, maxlen, threshold = ARGV[1], ARGV[2], tonumber(ARGV[3])
local dead_worker, limit = ARGV[4], tonumber(ARGV[5])
local q = queue_context({prefix = prefix, high = high, normal = normal, low = low,
  marker = marker, events = events, maxlen = maxlen, dead = dead}, ARGV[6])
local now = q.now
local requeued, buried, dropped = 0, 0, 0

local function bury(jobkey, id, f, count, reason, info)
  local why = 'its worker died ' .. count .. ' times while running it'
  if reason == 'lease expired' then
    why = 'its lease ran out ' .. count .. ' times while its worker was alive (a handler ' ..
      'that blocks the event loop longer than the lease?)'
  end
  local err = cjson.encode({type = 'PoisonPill', message = 'poison pill: ' .. why ..
    ' (last: ' .. reason .. ')', worker = f[2]})
  redis.call('HSET', jobkey, 'status', 'dead', 'finished', now, 'error', err,
    'error:' .. f[5], err)
  retire(q, jobkey, id, 'dead', f[6])
  redis.call('ZREM', active, id)
  free_slot(q, jobkey, id)
  info[#info + 1] = 'error'
  info[#info + 1] = err
  emit(events, maxlen, jobkey, id, 'dead', 'dead', now, info)
  settle_children(q, id, false)
  buried = buried + 1
end

local function reap(id, reason)
  if not redis.call('ZSCORE', active, id) then return end
  local jobkey = prefix .. id
  local f = redis.call('HMGET', jobkey, 'status', 'worker', 'type', 'priority', 'attempt',
    'ukey')
  if f[1] ~= 'active' then  -- no leased job behind the entry: drop it, no event
    redis.call('ZREM', active, id)
    dropped = dropped + 1
    return
  end
  if dead_worker ~= '' and reason == 'worker lost' and f[2] ~= dead_worker then return end
  if dead_worker ~= '' and f[2] == dead_worker then reason = 'worker lost' end
  -- Only a real death (the heartbeat, kept by a thread, stopped) is a death; a lease that
  -- ran out under a live worker is a stall, counted apart.
  local counter = reason == 'worker lost' and 'deaths' or 'stalls'
  local count = redis.call('HINCRBY', jobkey, counter, 1)
  local info = {'type', f[3], 'attempt', f[5], 'worker', f[2], 'reason', reason}
  if count >= threshold then return bury(jobkey, id, f, count, reason, info) end
  redis.call('HSET', jobkey, 'status', 'queued')
  redis.call('RPUSH', ready_key(high, normal, low, f[4]), id)
  redis.call('ZREM', active, id)
  free_slot(q, jobkey, id)
  emit(events, maxlen, jobkey, id, 'requeued', 'queued', now, info)
  requeued = requeued + 1
end

local budget = 10 * limit
while requeued + buried < limit and budget > 0 do
  local ids = redis.call('ZRANGEBYSCORE', active, '-inf', now, 'LIMIT', 0,
    math.min(limit, budget))
  for _, id in ipairs(ids) do reap(id, 'lease expired') end
  budget = budget - #ids
  if #ids < limit then break end
end
if dead_worker ~= '' then
  for _, id in ipairs(redis.call('SMEMBERS', held)) do reap(id, 'worker lost') end
  redis.call('DEL', held)
end
if requeued > 0 then wake(marker, 0) end
return {requeued, buried, dropped}
