#!lua flags=allow-oom
-- undo.lua: take back jobs this client just submitted, when a later queue of the same
-- multi-queue batch refused its part. Only a job still untouched is taken back: still in the
-- status it was submitted with, never claimed, no event since 'submitted', no children.
--
-- allow-oom: it only removes what the failed call added (plus one capped event per job).
--
-- KEYS[1]  ready list, high priority
-- KEYS[2]  ready list, normal priority
-- KEYS[3]  ready list, low priority
-- KEYS[4]  delayed ZSET
-- KEYS[5]  events STREAM
--
-- ARGV[1]  events stream MAXLEN
-- ARGV[2]  job key prefix "{<prefix>:<queue>}:job:" (same hash tag, so same Cluster slot)
-- ARGV[3]  the jobs, a JSON array of [id, ids of its parents] (children first)
--
-- Returns one code per job (codes.py SCRIPT_CODES['undo']):
--    1 DONE         taken back
--   -2 MISSING      the job hash is gone
--   -3 WRONG_STATE  the job moved on (claimed, canceled, has children...): left as it is
-- @include now_ms
-- @include ready_key
-- @include release_unique

local high, normal, low, delayed, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local maxlen, prefix, jobs = ARGV[1], ARGV[2], cjson.decode(ARGV[3])
local now = now_ms()

local function undo(id, parents)
  local jobkey = prefix .. id
  local f = redis.call('HMGET', jobkey, 'status', 'attempt', 'seq', 'priority', 'type', 'ukey')
  if not f[1] then return -2 end
  if f[2] ~= '0' or f[3] ~= '1' or redis.call('EXISTS', jobkey .. ':children') == 1 then
    return -3
  end
  if f[1] == 'queued' then
    if redis.call('LREM', ready_key(high, normal, low, f[4]), 1, id) == 0 then return -3 end
  elseif f[1] == 'delayed' then
    redis.call('ZREM', delayed, id)
  elseif f[1] ~= 'canceled' then
    return -3
  end
  for _, parent in ipairs(parents) do redis.call('SREM', prefix .. parent .. ':children', id) end
  release_unique(f[6], id)
  redis.call('DEL', jobkey)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'job', id, 'event', 'deleted',
    'status', f[1], 'seq', 2, 'ts', now, 'type', f[5], 'reason', 'batch refused')
  return 1
end

local out = {}
for i = 1, #jobs do out[i] = undo(jobs[i][1], jobs[i][2]) end
return out
