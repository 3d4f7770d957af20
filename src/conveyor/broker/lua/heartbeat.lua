#!lua flags=allow-oom
-- heartbeat.lua: a worker says it is alive, and publishes its info.
--
-- KEYS[1]  workers ZSET (worker id -> last heartbeat, ms of Redis time)
-- KEYS[2]  the worker's info HASH
--
-- ARGV[1]  worker id
-- ARGV[2]  info TTL in ms (kept well past the heartbeat TTL, so the reaper can still read
--          which queues a dead worker served)
-- then field/value pairs for the info HASH
--
-- allow-oom: a heartbeat overwrites the same member and fields (constant memory per worker),
-- and liveness must not depend on memory pressure: a worker refused its heartbeat at the
-- limit would be judged dead and its running jobs requeued once memory frees.
--
-- Returns data (codes.py DATA_REPLIES): the server time in ms.
-- @include now_ms

local workers, info = KEYS[1], KEYS[2]
local id, ttl = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
redis.call('ZADD', workers, now, id)
local fields = {'beat', now}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', info, unpack(fields))
redis.call('PEXPIRE', info, ttl)
return now
