-- Wake one idle worker of the queue. Member '0' is the only marker member; LT keeps the
-- earliest wake-up time when a delayed job and a ready job both ask for one, and adds the
-- member when it is missing (LT limits updates, never additions: Redis 6.2+ and Valkey).
local function wake(marker, at)
  redis.call('ZADD', marker, 'LT', at, '0')
end
