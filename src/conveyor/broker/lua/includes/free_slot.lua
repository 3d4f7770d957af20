-- A job that held a concurrency slot (field 'limit' names the slots ZSET) gives it up, and
-- the longest-waiting job parked on that limit becomes ready. q holds the queue's names:
-- prefix, high, normal, low, marker, events, maxlen, now. The waiter is pushed on its ready list
-- before it leaves the waiting list.
local function free_slot(q, jobkey, id)
  local slots = redis.call('HGET', jobkey, 'limit')
  if not slots then return end
  redis.call('HDEL', jobkey, 'limit')
  redis.call('ZREM', slots, id)
  local waiting = slots .. ':waiting'
  while true do
    local waiter = redis.call('LINDEX', waiting, 0)
    if not waiter then return end
    local wk = q.prefix .. waiter
    local f = redis.call('HMGET', wk, 'status', 'priority', 'type')
    if f[1] == 'delayed' then
      redis.call('HSET', wk, 'status', 'queued')
      redis.call('LPUSH', ready_key(q.high, q.normal, q.low, f[2]), waiter)
      redis.call('LPOP', waiting)  -- after the add: a job is never on no list
      wake(q.marker, 0)
      emit(q.events, q.maxlen, wk, waiter, 'queued', 'queued', q.now, {'type', f[3]})
      return
    end
    redis.call('LPOP', waiting)
  end
end
