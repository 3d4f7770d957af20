#!lua flags=allow-oom
-- lock.lua: a lease lock with a fencing token that grows on every acquisition.
--
-- KEYS[1]  lock STRING ("<owner> <token>", with a TTL)
-- KEYS[2]  fence counter STRING (never expires, so tokens only ever grow)
--
-- ARGV[1]  operation: 'acquire', 'renew' or 'release'
-- ARGV[2]  owner (random per holder)
-- ARGV[3]  TTL in ms (acquire, renew)
-- ARGV[4]  channel to PUBLISH on release, so waiters retry at once (a channel, not a key)
--
-- allow-oom: renew (PEXPIRE) and release (DEL) never grow memory and must keep working at
-- the limit, or the scheduler's leader would lose its lease there; acquire writes one small
-- key per lock name (a handful of names).
--
-- Returns data (codes.py DATA_REPLIES): acquire -> the fencing token (> 0), or -<ms left>
--          while someone else holds it;
--          renew -> the token if still ours, else 0; release -> 1 if it was ours, else 0.

local lock, fence = KEYS[1], KEYS[2]
local op, owner, ttl, channel = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local held = redis.call('GET', lock)
local holder, token = false, false
if held then
  local space = string.find(held, ' ', 1, true)
  holder, token = string.sub(held, 1, space - 1), tonumber(string.sub(held, space + 1))
end

if op == 'acquire' then
  if held and holder ~= owner then return -math.max(1, redis.call('PTTL', lock)) end
  if not held then token = redis.call('INCR', fence) end
  redis.call('SET', lock, owner .. ' ' .. token, 'PX', ttl)
  return token
elseif op == 'renew' then
  if holder ~= owner then return 0 end
  redis.call('PEXPIRE', lock, ttl)
  return token
end
if holder ~= owner then return 0 end
redis.call('DEL', lock)
redis.call('PUBLISH', channel, 'released')
return 1
