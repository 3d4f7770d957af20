-- enqueue.lua: submit one or more jobs to one queue, ready now or delayed.
--
-- KEYS[1]  ready list, high priority
-- KEYS[2]  ready list, normal priority
-- KEYS[3]  ready list, low priority
-- KEYS[4]  delayed ZSET (job id -> due ms)
-- KEYS[5]  marker ZSET (wakes an idle worker)
-- KEYS[6]  events STREAM
-- then for job i (i = 1..n): KEYS[5 + 2i] job HASH, KEYS[6 + 2i] unique key (placeholder if none)
--
-- ARGV[1]  events stream MAXLEN (approximate)
-- ARGV[2]  idempotency key TTL in ms
-- ARGV[3]  queue name
-- then for job i, 10 values starting at ARGV[4 + 10(i-1)]:
--   id, type, args (JSON), priority, delay ms (-1 none), run_at ms (-1 none),
--   max_attempts, timeout seconds, idempotency value ('' none; else "<fingerprint>"), meta (JSON)
--
-- Returns a flat array, 3 entries per job: job id, status ('queued'|'delayed'), created
-- (1 = new job, 0 = an existing job returned for a live idempotency key; then the second
-- entry is the stored "<id> <fingerprint>" value). Submitting an id that exists already (a
-- client retrying after a lost reply) changes nothing and answers its current status.
-- @include now_ms
-- @include emit
-- @include wake
-- @include ready_key

local high, normal, low = KEYS[1], KEYS[2], KEYS[3]
local delayed, marker, events = KEYS[4], KEYS[5], KEYS[6]
local maxlen, unique_ttl, queue = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out = {}
local n = (#ARGV - 3) / 10

-- Job i: returns the three reply entries described in the header.
local function submit(i)
  local a = 3 + 10 * (i - 1)
  local id, jtype, args, priority = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local delay, run_at = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local max_attempts, timeout, ikey, meta = ARGV[a + 7], ARGV[a + 8], ARGV[a + 9], ARGV[a + 10]
  local jobkey, uniquekey = KEYS[5 + 2 * i], KEYS[6 + 2 * i]
  -- The same id again is a client retrying after a lost reply: never enqueue twice.
  local known = redis.call('HGET', jobkey, 'status')
  if known then return id, known, 1 end
  if ikey ~= '' then
    local ok = redis.call('SET', uniquekey, id .. ' ' .. ikey, 'NX', 'PX', unique_ttl)
    if not ok then return id, redis.call('GET', uniquekey), 0 end
  end
  local due = now
  if run_at >= 0 then due = run_at elseif delay > 0 then due = now + delay end
  local status = 'queued'
  if due > now then status = 'delayed' end
  redis.call('HSET', jobkey, 'id', id, 'type', jtype, 'queue', queue, 'args', args,
    'priority', priority, 'status', status, 'attempt', 0, 'failures', 0, 'deaths', 0,
    'max_attempts', max_attempts, 'timeout', timeout, 'created', now, 'due', due,
    'meta', meta)
  if ikey ~= '' then redis.call('HSET', jobkey, 'ukey', uniquekey) end
  if status == 'delayed' then
    redis.call('ZADD', delayed, due, id)
    wake(marker, due)
  else
    redis.call('LPUSH', ready_key(high, normal, low, priority), id)
    wake(marker, 0)
  end
  emit(events, maxlen, jobkey, id, 'submitted', status, now,
    {'type', jtype, 'attempt', 0, 'priority', priority, 'args', args,
     'max_attempts', max_attempts, 'due', due, 'meta', meta})
  return id, status, 1
end

for i = 1, n do
  local id, status, created = submit(i)
  out[#out + 1] = id
  out[#out + 1] = status
  out[#out + 1] = created
end
return out
