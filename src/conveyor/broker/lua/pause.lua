#!lua
-- pause.lua: pause or resume a queue (workers stop or start claiming from it).
--
-- KEYS[1]  queue meta HASH
-- KEYS[2]  marker ZSET
-- KEYS[3]  events STREAM
--
-- ARGV[1]  '1' pause, '0' resume
-- ARGV[2]  events stream MAXLEN
--
-- Returns (codes.py SCRIPT_CODES['pause']):
--    1 DONE         paused or resumed
-- @include now_ms
-- @include wake

local meta, marker, events = KEYS[1], KEYS[2], KEYS[3]
local paused, maxlen = ARGV[1], ARGV[2]
local now = now_ms()
redis.call('HSET', meta, 'paused', paused)
local event = 'paused'
if paused == '0' then
  event = 'resumed'
  wake(marker, 0)
end
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'job', '', 'event', event,
  'status', '', 'seq', 0, 'ts', now)
return 1
