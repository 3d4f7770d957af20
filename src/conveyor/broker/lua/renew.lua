#!lua flags=allow-oom
-- renew.lua: extend the leases of all the jobs one worker holds in one queue.
--
-- allow-oom: renewing only moves scores of existing members (ZADD XX) and TTLs, so it never
-- grows memory; refusing it at the memory limit would let the leases of live, running jobs
-- run out, and the reaper would run them a second time once memory frees.
--
-- KEYS[1]  active ZSET
-- KEYS[2]  SET of ids the worker holds (its TTL is refreshed; a placeholder when unknown)
-- then KEYS[2 + i] the job HASH of job i
--
-- ARGV[1]  lease length in ms
-- ARGV[2]  TTL of the held SET in ms (a few leases)
-- then for job i, 2 values from ARGV[3 + 2(i-1)]: id, lease token (attempt)
--
-- Returns data (codes.py DATA_REPLIES): the ids whose lease is lost (re-leased elsewhere,
-- reaped or gone), and then, after a '|' separator entry, the ids whose cancellation was
-- requested.
-- @include now_ms

local active, held = KEYS[1], KEYS[2]
local lease, held_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local lost, cancel = {}, {}
local n = (#ARGV - 2) / 2

for i = 1, n do
  local id, token = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  local f = redis.call('HMGET', KEYS[2 + i], 'status', 'attempt', 'cancel', 'limit')
  if f[1] == 'active' and f[2] == token and redis.call('ZSCORE', active, id) then
    redis.call('ZADD', active, 'XX', now + lease, id)
    -- A concurrency slot lives as long as the lease ('limit' names it; same hash tag).
    if f[4] then redis.call('ZADD', f[4], 'XX', now + lease, id) end
    if f[3] == '1' then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
redis.call('PEXPIRE', held, held_ttl)
lost[#lost + 1] = '|'
for _, id in ipairs(cancel) do lost[#lost + 1] = id end
return lost
