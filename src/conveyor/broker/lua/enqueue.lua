#!lua
-- enqueue.lua: submit one or more jobs to one queue, ready now or delayed.
--
-- KEYS[1]  ready list, high priority
-- KEYS[2]  ready list, normal priority
-- KEYS[3]  ready list, low priority
-- KEYS[4]  delayed ZSET (job id -> due ms)
-- KEYS[5]  marker ZSET (wakes an idle worker)
-- KEYS[6]  events STREAM
--
-- ARGV[1]  events stream MAXLEN (approximate)
-- ARGV[2]  idempotency key TTL in ms
-- ARGV[3]  queue name
-- ARGV[4]  job key prefix "{<prefix>:<queue>}:job:" (same hash tag, so same Cluster slot)
-- ARGV[5]  unique key prefix "{<prefix>:<queue>}:unique:" (same hash tag)
-- ARGV[6]  the jobs, a JSON array of arrays: [id, type, args (JSON text), priority,
--          delay ms (-1 none), run_at ms (-1 none), max_attempts, timeout seconds,
--          idempotency fingerprint ('' = no key), idempotency key, meta (JSON text),
--          ids of jobs of this queue it depends on (array), on_parent_failure ('cancel'|'run')]
--          One JSON argument instead of eleven per job: packing thousands of arguments
--          costs the client more than the whole script costs the server.
--          '' = one job, given flat in ARGV[8..] (the single-submit path: no JSON to encode
--          or decode for one job).
-- ARGV[7]  retention policy "<result_ttl ms> <dead_ttl ms> <release unique key 0|1>" (for a
--          job canceled at submit because a parent already failed)
-- ARGV[8..19]  with ARGV[6] = '': the job's id, type, args, priority, delay ms, run_at ms,
--          max_attempts, timeout, fingerprint, idempotency key, meta, on_parent_failure;
--          ARGV[20..] the ids it depends on. The same job, the same writes, as in the array.
--
-- Returns data (codes.py DATA_REPLIES): a flat array, 3 entries per job: job id, status
-- ('queued'|'delayed'|'canceled'), created (1 = new job, 0 = an existing job returned for a
-- live idempotency key; then the second entry is the stored "<id> <fingerprint>" value).
-- Submitting an id that exists already (a client retrying after a lost reply) changes
-- nothing and answers its current status.
-- A job with unfinished parents waits as 'delayed' (field 'waiting' counts them) until they
-- complete. If a parent is not in this queue, nothing is written and the reply is
-- {'!', <job index>, <parent id>}; if a live idempotency key names a job with another
-- fingerprint, nothing is written and the reply is {'!key', <job index>, <stored value>}.
-- A parent named twice counts once.
-- @include now_ms
-- @include wake
-- @include ready_key
-- @include queue_context
-- @include release_unique
-- @include retire
-- @include check_batch

local high, normal, low = KEYS[1], KEYS[2], KEYS[3]
local delayed, marker, events = KEYS[4], KEYS[5], KEYS[6]
local maxlen, unique_ttl, queue = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local job_prefix, unique_prefix = ARGV[4], ARGV[5]
local jobs, checks
if ARGV[6] == '' then
  -- One job, flat: numbers made numbers here as cjson makes them, so every field is written
  -- byte for byte as the array form writes it.
  local parents = {}
  for i = 20, #ARGV do parents[#parents + 1] = ARGV[i] end
  jobs = {{ARGV[8], ARGV[9], ARGV[10], ARGV[11], tonumber(ARGV[12]), tonumber(ARGV[13]),
    tonumber(ARGV[14]), tonumber(ARGV[15]), ARGV[16], ARGV[17], ARGV[18], parents, ARGV[19]}}
  checks = #parents > 0 or ARGV[17] ~= ''
else
  jobs = cjson.decode(ARGV[6])
  checks = true
end
local q = queue_context({}, ARGV[7])
local now = q.now
local wake_at = false

-- Every parent must exist, and no idempotency key may name a different job (stored, or
-- earlier in this batch), before anything is written: all or nothing.
if checks then
  local refused = check_batch(jobs, job_prefix, unique_prefix)
  if refused then return refused end
end

-- The parents still to finish ({} = ready to go), or false when one failed and the job
-- does not run on a parent's failure.
local function pending_parents(job)
  local waiting, seen = {}, {}
  for _, parent in ipairs(job[12]) do
    local status = 'completed'  -- a parent named again counts once
    if not seen[parent] then status = redis.call('HGET', job_prefix .. parent, 'status') end
    seen[parent] = true
    if status == 'dead' or status == 'canceled' then
      if job[13] ~= 'run' then return false end
    elseif status ~= 'completed' then
      waiting[#waiting + 1] = parent
    end
  end
  return waiting
end

-- One job: returns the three reply entries described in the header.
local function submit(job)
  local id, jtype, args, priority = job[1], job[2], job[3], job[4]
  local delay, run_at, max_attempts, timeout = job[5], job[6], job[7], job[8]
  local fingerprint, ikey, meta = job[9], job[10], job[11]
  local jobkey = job_prefix .. id
  -- The same id again is a client retrying after a lost reply: never enqueue twice.
  local known = redis.call('HGET', jobkey, 'status')
  if known then return id, known, 1 end
  local uniquekey = ''
  if ikey ~= '' then
    uniquekey = unique_prefix .. ikey
    local ok = redis.call('SET', uniquekey, id .. ' ' .. fingerprint, 'NX', 'PX', unique_ttl)
    if not ok then return id, redis.call('GET', uniquekey), 0 end
  end
  local due = now
  if run_at >= 0 then due = run_at elseif delay > 0 then due = now + delay end
  local status = 'queued'
  if due > now then status = 'delayed' end
  local waiting = pending_parents(job)
  if not waiting then status = 'canceled' elseif #waiting > 0 then status = 'delayed' end
  redis.call('HSET', jobkey, 'id', id, 'type', jtype, 'queue', queue, 'args', args,
    'priority', priority, 'status', status, 'attempt', 0, 'failures', 0, 'deaths', 0,
    'max_attempts', max_attempts, 'timeout', timeout, 'created', now, 'due', due,
    'meta', meta, 'ukey', uniquekey, 'on_parent_failure', job[13], 'seq', 1)
  local at = 0
  if not waiting or #waiting > 0 then
    -- Waits for (or was canceled by) its parents: on no list until they settle it.
    at = false
    if waiting then
      redis.call('HSET', jobkey, 'waiting', #waiting)
      for _, parent in ipairs(waiting) do
        redis.call('SADD', job_prefix .. parent .. ':children', id)
      end
    else
      redis.call('HSET', jobkey, 'finished', now, 'error',
        '{"type":"ParentFailed","message":"canceled: a job it depends on did not complete"}')
      retire(q, jobkey, id, 'canceled', uniquekey)
    end
  elseif status == 'delayed' then
    redis.call('ZADD', delayed, due, id)
    at = due
  else
    redis.call('LPUSH', ready_key(high, normal, low, priority), id)
  end
  if at and (not wake_at or at < wake_at) then wake_at = at end
  -- The first event of a job: its sequence number is 1, set with the fields above.
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'job', id, 'event', 'submitted',
    'status', status, 'seq', 1, 'ts', now, 'type', jtype, 'attempt', 0, 'priority', priority,
    'args', args, 'max_attempts', max_attempts, 'due', due, 'meta', meta)
  return id, status, 1
end

local out = {}
for i = 1, #jobs do
  local id, status, created = submit(jobs[i])
  out[#out + 1] = id
  out[#out + 1] = status
  out[#out + 1] = created
end
-- One wake-up for the batch, at the earliest time any of its jobs is due.
if wake_at then wake(marker, wake_at) end
return out
