#!lua
-- progress.lua: record a running job's progress and emit a 'progress' event.
--
-- KEYS[1]  job HASH
-- KEYS[2]  events STREAM
--
-- ARGV[1]  job id
-- ARGV[2]  lease token (attempt): only the current holder may report
-- ARGV[3]  fraction done, 0 to 1
-- ARGV[4]  message ('' for none)
-- ARGV[5]  events stream MAXLEN
--
-- Returns (codes.py SCRIPT_CODES['progress']):
--    1 DONE         recorded
--   -1 STALE_LEASE  the job was leased again or is no longer active
--   -2 MISSING      the job hash is gone
-- @include now_ms
-- @include emit

local jobkey, events = KEYS[1], KEYS[2]
local id, token, fraction, message, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local f = redis.call('HMGET', jobkey, 'status', 'attempt', 'type')
if not f[1] then return -2 end
if f[1] ~= 'active' or f[2] ~= token then return -1 end
redis.call('HSET', jobkey, 'progress', fraction, 'progress_message', message)
emit(events, maxlen, jobkey, id, 'progress', 'active', now_ms(),
  {'type', f[3], 'attempt', token, 'progress', fraction, 'message', message})
return 1
