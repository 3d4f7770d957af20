-- Wake one idle worker of the queue. Member '0' is the only marker member; LT keeps the
-- earliest wake-up time when a delayed job and a ready job both ask for one.
local function wake(marker, at)
  redis.call('ZADD', marker, 'LT', at, '0')
  if redis.call('ZSCORE', marker, '0') == false then
    redis.call('ZADD', marker, at, '0')
  end
end
