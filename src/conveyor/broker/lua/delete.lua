#!lua flags=allow-oom
-- delete.lua: delete jobs that are not running (from the DLQ, a ready list or the delayed set).
-- The jobs that wait on a deleted job are settled as if it had ended canceled: canceled in
-- turn, or made ready when they asked to run on a parent's failure.
--
-- allow-oom: deleting is how an operator frees memory, so it must run at the memory limit.
-- On balance it frees: each deleted job takes its hash (arguments, result, errors) away; it
-- appends one event (the stream is capped) and, per waiting child, a few small fields.
--
-- KEYS[1]  dead ZSET
-- KEYS[2]  delayed ZSET
-- KEYS[3]  ready list, high priority
-- KEYS[4]  ready list, normal priority
-- KEYS[5]  ready list, low priority
-- KEYS[6]  events STREAM
-- KEYS[7]  marker ZSET (for children that run anyway)
-- then KEYS[7 + i] the job HASH of job i
--
-- ARGV[1]  events stream MAXLEN
-- ARGV[2]  retention policy "<result_ttl ms> <dead_ttl ms> <release unique key 0|1>"
-- ARGV[3]  job key prefix "{<prefix>:<queue>}:job:" (for the jobs that wait on these)
-- then ARGV[3 + i] the id of job i
--
-- Returns one code per job (codes.py SCRIPT_CODES['delete']):
--    1 DONE         deleted
--   -2 MISSING      the job hash is gone (its dead-letter entry, if any, is dropped)
--   -3 WRONG_STATE  the job is active (cancel it first)
-- @include now_ms
-- @include emit
-- @include ready_key
-- @include wake
-- @include queue_context
-- @include release_unique
-- @include retire
-- @include settle_children

local dead, delayed, high, normal, low = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local events, marker = KEYS[6], KEYS[7]
local maxlen = ARGV[1]
local q = queue_context({prefix = ARGV[3], high = high, normal = normal, low = low,
  marker = marker, events = events, maxlen = maxlen, dead = dead}, ARGV[2])
local now = q.now
local out = {}

for i = 1, #ARGV - 3 do
  local id, jobkey = ARGV[3 + i], KEYS[7 + i]
  local f = redis.call('HMGET', jobkey, 'status', 'type', 'priority')
  if not f[1] then
    redis.call('ZREM', dead, id)
    out[i] = -2
  elseif f[1] == 'active' then
    out[i] = -3
  else
    if f[1] == 'queued' then redis.call('LREM', ready_key(high, normal, low, f[3]), 1, id) end
    redis.call('ZREM', dead, id)
    redis.call('ZREM', delayed, id)
    emit(events, maxlen, jobkey, id, 'deleted', f[1], now, {'type', f[2]})
    redis.call('DEL', jobkey)
    settle_children(q, id, false)
    out[i] = 1
  end
end
return out
