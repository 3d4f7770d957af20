-- Bound the life of a job that reached a terminal status ('completed', 'canceled', 'dead'):
-- the one place every script applies retention, so they cannot drift apart.
-- q is the queue context: now, result_ttl (ms; completed and canceled jobs), dead_ttl (ms;
-- dead jobs and the dead ZSET), dead (the dead ZSET), release ('1' = free the job's
-- idempotency key now). A dead job joins the dead ZSET (the add comes before the caller's
-- removes); each write to that ZSET drops its entries older than dead_ttl, and the ZSET
-- itself expires dead_ttl after its newest entry, like the jobs it lists.
local function retire(q, jobkey, id, status, ukey)
  if status == 'dead' then
    redis.call('ZADD', q.dead, q.now, id)
    redis.call('ZREMRANGEBYSCORE', q.dead, '-inf', '(' .. (q.now - q.dead_ttl))
    redis.call('PEXPIRE', q.dead, q.dead_ttl)
    redis.call('PEXPIRE', jobkey, q.dead_ttl)
  else
    redis.call('PEXPIRE', jobkey, q.result_ttl)
  end
  if q.release == '1' then release_unique(ukey, id) end
end
