-- renew.lua: extend the leases of all the jobs one worker holds in one queue.
--
-- KEYS[1]  active ZSET
-- then KEYS[1 + i] the job HASH of job i
--
-- ARGV[1]  lease length in ms
-- then for job i, 2 values from ARGV[2 + 2(i-1)]: id, lease token (attempt)
--
-- Returns the ids whose lease is lost (re-leased elsewhere, reaped or gone), and then, after
-- a '|' separator entry, the ids whose cancellation was requested.
-- @include now_ms

local active = KEYS[1]
local lease = tonumber(ARGV[1])
local now = now_ms()
local lost, cancel = {}, {}
local n = (#ARGV - 1) / 2

for i = 1, n do
  local id, token = ARGV[2 * i], ARGV[2 * i + 1]
  local f = redis.call('HMGET', KEYS[1 + i], 'status', 'attempt', 'cancel', 'limit')
  if f[1] == 'active' and f[2] == token and redis.call('ZSCORE', active, id) then
    redis.call('ZADD', active, 'XX', now + lease, id)
    -- A concurrency slot lives as long as the lease ('limit' names it; same hash tag).
    if f[4] then redis.call('ZADD', f[4], 'XX', now + lease, id) end
    if f[3] == '1' then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
lost[#lost + 1] = '|'
for _, id in ipairs(cancel) do lost[#lost + 1] = id end
return lost
