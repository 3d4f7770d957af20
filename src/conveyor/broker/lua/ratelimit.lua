#!lua
-- ratelimit.lua: count one request against a GCRA rate limit (generic cell rate algorithm:
-- a token bucket kept as a single timestamp, refilled by the passing of Redis time).
--
-- KEYS[1]  the limit's bucket STRING: its theoretical arrival time (TAT), in µs of Redis time
--
-- ARGV[1]  emission interval in µs (the period divided by the limit)
-- ARGV[2]  burst: how many requests may arrive at once (normally the limit itself)
-- ARGV[3]  cost of this request (normally 1)
--
-- Returns data (codes.py DATA_REPLIES): {allowed, remaining, retry_after_us, reset_us}:
-- allowed is 1 or 0; remaining is how
-- many more requests would be admitted now; retry_after_us is 0 when admitted, else the wait
-- before this request would be; reset_us is the time until the bucket is full again.
-- The only write is SET ... PX, so every bucket expires once it is full again: no key is ever
-- left without a TTL.

local bucket = KEYS[1]
local interval, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', bucket) or now) or now
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
local reset = new_tat - now
-- %.0f: Lua would print a number this large in exponent form and lose its last digits.
redis.call('SET', bucket, string.format('%.0f', new_tat), 'PX', math.ceil(reset / 1000))
return {1, math.floor((now - allow_at) / interval), 0, reset}
