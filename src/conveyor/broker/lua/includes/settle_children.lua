-- Settle the jobs that wait on a job that just ended (dependencies live in one queue).
-- q is the queue context: prefix, high, normal, low, marker, events, maxlen, now, and what
-- retire needs (result_ttl, dead_ttl, dead, release).
-- ok is true when the parent completed. A child whose parents have all completed becomes
-- ready; when a parent ends dead or canceled, a child canceled (unless it asked to run),
-- and that cancellation settles its own children in turn, so a chain of any length settles
-- in this one script.
local function settle_children(q, parent, ok)
  if redis.call('EXISTS', q.prefix .. parent .. ':children') == 0 then return end
  local stack = {{parent, ok}}
  while #stack > 0 do
    local item = table.remove(stack)
    local children = q.prefix .. item[1] .. ':children'
    for _, child in ipairs(redis.call('SMEMBERS', children)) do
      local ck = q.prefix .. child
      local f = redis.call('HMGET', ck, 'status', 'on_parent_failure', 'priority', 'type', 'ukey')
      if f[1] == 'delayed' and redis.call('HEXISTS', ck, 'waiting') == 1 then
        if item[2] or f[2] == 'run' then
          if redis.call('HINCRBY', ck, 'waiting', -1) <= 0 then
            redis.call('HDEL', ck, 'waiting')
            redis.call('HSET', ck, 'status', 'queued', 'due', q.now)
            redis.call('LPUSH', ready_key(q.high, q.normal, q.low, f[3]), child)
            wake(q.marker, 0)
            emit(q.events, q.maxlen, ck, child, 'queued', 'queued', q.now, {'type', f[4]})
          end
        else
          local err = cjson.encode({type = 'ParentFailed',
            message = 'canceled: job ' .. item[1] .. ' it depends on did not complete'})
          redis.call('HDEL', ck, 'waiting')
          redis.call('HSET', ck, 'status', 'canceled', 'finished', q.now, 'error', err)
          retire(q, ck, child, 'canceled', f[5])
          emit(q.events, q.maxlen, ck, child, 'canceled', 'canceled', q.now,
            {'type', f[4], 'error', err})
          stack[#stack + 1] = {child, false}
        end
      end
    end
    redis.call('DEL', children)
  end
end
