-- A job that held a concurrency slot (field 'limit' names the slots ZSET) gives it up, and
-- the longest-waiting job parked on that limit becomes ready, at the head of its ready list
-- (it was there when it was claimed), with the slot kept for it until the freed holder's
-- lease would have ended (at least a second): a job claimed meanwhile cannot take it, so
-- parked jobs start in the order they came. q holds the queue's names: prefix, high,
-- normal, low, marker, events, maxlen, now. The waiter is pushed on its ready list before it
-- leaves the waiting list. `slots`, when given, is the job's 'limit' field the caller
-- already read (false: none).
local function free_slot(q, jobkey, id, slots)
  if slots == nil then slots = redis.call('HGET', jobkey, 'limit') end
  if not slots then return end
  redis.call('HDEL', jobkey, 'limit')
  local held_until = tonumber(redis.call('ZSCORE', slots, id) or 0) or 0
  redis.call('ZREM', slots, id)
  local waiting = slots .. ':waiting'
  while true do
    local waiter = redis.call('LINDEX', waiting, 0)
    if not waiter then return end
    local wk = q.prefix .. waiter
    local f = redis.call('HMGET', wk, 'status', 'priority', 'type')
    if f[1] == 'delayed' then
      redis.call('HSET', wk, 'status', 'queued')
      redis.call('RPUSH', ready_key(q.high, q.normal, q.low, f[2]), waiter)
      redis.call('ZADD', slots, math.max(held_until, q.now + 1000), waiter)
      redis.call('LPOP', waiting)  -- after the add: a job is never on no list
      wake(q.marker, 0)
      emit(q.events, q.maxlen, wk, waiter, 'queued', 'queued', q.now, {'type', f[3]})
      return
    end
    redis.call('LPOP', waiting)
  end
end
