-- delete.lua: delete jobs that are not running (from the DLQ, a ready list or the delayed set).
--
-- KEYS[1]  dead ZSET
-- KEYS[2]  delayed ZSET
-- KEYS[3]  ready list, high priority
-- KEYS[4]  ready list, normal priority
-- KEYS[5]  ready list, low priority
-- KEYS[6]  events STREAM
-- then KEYS[6 + i] the job HASH of job i
--
-- ARGV[1]  events stream MAXLEN
-- then ARGV[1 + i] the id of job i
--
-- Returns one code per job: 1 deleted, -2 missing, -3 active (cancel it first).
-- @include now_ms
-- @include emit
-- @include ready_key

local dead, delayed, high, normal, low, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local maxlen = ARGV[1]
local now = now_ms()
local out = {}

for i = 1, #ARGV - 1 do
  local id, jobkey = ARGV[1 + i], KEYS[6 + i]
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
    out[i] = 1
  end
end
return out
