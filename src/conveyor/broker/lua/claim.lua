#!lua
-- claim.lua: promote due delayed jobs, then lease up to K ready jobs, high before normal
-- before low, oldest first within a priority.
--
-- KEYS[1]  ready list, high priority
-- KEYS[2]  ready list, normal priority
-- KEYS[3]  ready list, low priority
-- KEYS[4]  delayed ZSET
-- KEYS[5]  active ZSET (job id -> lease deadline ms)
-- KEYS[6]  marker ZSET
-- KEYS[7]  events STREAM
-- KEYS[8]  queue meta HASH (field 'paused')
-- KEYS[9]  SET of ids the claiming worker holds
-- KEYS[10] optional: the claiming worker's quiet flag; while it is set nothing is promoted or
--          leased and wait_ms is -2. Only the claim queued behind a wait sends it (a worker
--          quieted while it waits must not lease on its wake-up); never on Cluster, where
--          it lives on another slot (that worker reads the flag before each claim instead).
--
-- ARGV[1]  K, the most jobs to lease
-- ARGV[2]  lease length in ms
-- ARGV[3]  worker id
-- ARGV[4]  events stream MAXLEN
-- ARGV[5]  job key prefix "{<prefix>:<queue>}:job:" (same hash tag, so same Cluster slot)
-- ARGV[6]  most delayed jobs to promote in this call
-- ARGV[7]  TTL of the held SET in ms (a few leases; claim and renew refresh it)
-- ARGV[8]  optional: most microseconds to spend promoting in this call (default 2000). Due
--          jobs are promoted in chunks of 100 and the call stops after the chunk that goes
--          past this time, so however many jobs come due at once (a million delayed jobs
--          due at the same moment), one claim holds the server for a few milliseconds at
--          most; wait_ms 0 says more are due, and the worker claims again at once.
--
-- A due job that a worker handed back (its type has no handler there; handback.lua) is not
-- promoted by that same worker until its 'avoid_until' time, so a worker that has the type
-- takes it meanwhile; the avoiding worker waits until then (wait_ms), it does not spin.
--
-- A job joins its next structure before it leaves the last one: a due job is pushed on its
-- ready list before it leaves the delayed ZSET; a claimed job is read from the tail of its
-- ready list, written to 'active', and only then trimmed off the list.
--
-- Returns data (codes.py DATA_REPLIES), {wait_ms, jobs}: wait_ms is the time until the next delayed job is due (-1 when
-- none, or the queue is paused); jobs is a JSON array with, per job, [id, attempt (the
-- lease/fencing token), type, args, max_attempts, timeout, priority, created, failures, due,
-- meta, ukey]. One JSON reply decodes far faster on the client than 12 entries a job.
-- @include now_ms
-- @include emit
-- @include wake
-- @include ready_key

local high, normal, low = KEYS[1], KEYS[2], KEYS[3]
local delayed, active, marker, events = KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local meta, held = KEYS[8], KEYS[9]
local quiet = KEYS[10]
local want, lease, worker = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local maxlen, prefix, promote_limit = ARGV[4], ARGV[5], tonumber(ARGV[6])
local held_ttl = tonumber(ARGV[7])
local budget_us = tonumber(ARGV[8] or '') or 2000
if quiet and redis.call('EXISTS', quiet) == 1 then return {-2, '[]'} end
local now = now_ms()

local function clock_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Promote one chunk of due jobs: returns how many ids it looked at and how many it
-- promoted. An avoided job stays in the ZSET, ahead of every due job not looked at yet, so
-- the next chunk starts after them.
local PROMOTE_CHUNK = 100
local avoided, avoided_until = 0, nil
local function promote_chunk(n)
  local ids = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', avoided, n)
  local lists, gone = {}, {}
  for _, id in ipairs(ids) do
    local jobkey = prefix .. id
    local d = redis.call('HMGET', jobkey, 'priority', 'type', 'avoid', 'avoid_until')
    local until_ms = tonumber(d[4] or 0) or 0
    if d[3] == worker and now < until_ms then
      avoided = avoided + 1
      avoided_until = math.min(avoided_until or until_ms, until_ms)
    else
      if d[1] then
        local list = ready_key(high, normal, low, d[1])
        lists[list] = lists[list] or {}
        table.insert(lists[list], id)
        redis.call('HSET', jobkey, 'status', 'queued')
        emit(events, maxlen, jobkey, id, 'queued', 'queued', now, {'type', d[2]})
      end
      gone[#gone + 1] = id
    end
  end
  -- On its ready list before it leaves the delayed ZSET; one LPUSH per list keeps the order
  -- one LPUSH per job gives.
  for _, list in ipairs({high, normal, low}) do
    if lists[list] then redis.call('LPUSH', list, unpack(lists[list])) end
  end
  if #gone > 0 then redis.call('ZREM', delayed, unpack(gone)) end
  return #ids, #gone
end

-- The time budget ends a call only once it promoted something, so a worker whose first due
-- jobs are all avoided still gets past them (within promote_limit, as before).
local looked, promoted, more_due = 0, 0, false
local started_us = clock_us()
while looked < promote_limit do
  local want_ids = math.min(PROMOTE_CHUNK, promote_limit - looked)
  local got_ids, moved = promote_chunk(want_ids)
  looked, promoted = looked + got_ids, promoted + moved
  if got_ids < want_ids then break end  -- nothing more is due
  if looked >= promote_limit or (promoted > 0 and clock_us() - started_us >= budget_us) then
    more_due = true
    break
  end
end

if redis.call('HGET', meta, 'paused') == '1' then return {-1, '[]'} end

local out = {}
local got = 0
local function lease_job(id)
  local jobkey = prefix .. id
  -- One read and one write per job: the attempt (the fencing token) and the event sequence
  -- are counted here rather than by HINCRBY, in the same atomic script.
  local f = redis.call('HMGET', jobkey, 'type', 'args', 'max_attempts', 'timeout',
    'priority', 'created', 'failures', 'due', 'meta', 'ukey', 'attempt', 'seq')
  if not f[1] then return end  -- the job's hash is gone (every job has a type)
  local attempt = (tonumber(f[11]) or 0) + 1
  local seq = (tonumber(f[12]) or 0) + 1
  redis.call('HSET', jobkey, 'status', 'active', 'worker', worker, 'started', now,
    'attempt', attempt, 'seq', seq)
  redis.call('ZADD', active, now + lease, id)
  redis.call('SADD', held, id)
  emit(events, maxlen, jobkey, id, 'active', 'active', now,
    {'type', f[1], 'attempt', attempt, 'worker', worker}, seq)
  local job = {id, attempt}
  for k = 1, 10 do job[k + 2] = f[k] or '' end
  out[#out + 1] = job
  got = got + 1
end

for _, list in ipairs({high, normal, low}) do
  while got < want do
    -- The oldest ids are at the tail (LPUSH on submit): lease them, then trim them off.
    local ids = redis.call('LRANGE', list, got - want, -1)
    if #ids == 0 then break end
    for k = #ids, 1, -1 do lease_job(ids[k]) end
    redis.call('LTRIM', list, 0, -#ids - 1)
  end
end
if got > 0 then redis.call('PEXPIRE', held, held_ttl) end
if redis.call('LLEN', high) + redis.call('LLEN', normal) + redis.call('LLEN', low) > 0 then
  wake(marker, 0)
end
local wait_ms = -1
if more_due then
  wait_ms = 0  -- more may be due than this call promoted
else
  local nxt = redis.call('ZRANGEBYSCORE', delayed, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if nxt[2] then wait_ms = tonumber(nxt[2]) - now end
  if avoided_until and (wait_ms < 0 or avoided_until - now < wait_ms) then
    wait_ms = avoided_until - now
  end
end
if got == 0 then return {wait_ms, '[]'} end
return {wait_ms, cjson.encode(out)}
