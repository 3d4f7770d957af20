-- The queue context the shared includes take (free_slot, settle_children, retire): the
-- queue's key names in q, plus the server time and the retention policy, one ARGV entry
-- built in one place (Broker.policy): "<result_ttl ms> <dead_ttl ms> <release 0|1>".
local function queue_context(q, policy)
  local result_ttl, dead_ttl, release = string.match(policy or '', '^(%d+) (%d+) ([01])$')
  q.result_ttl, q.dead_ttl, q.release = tonumber(result_ttl), tonumber(dead_ttl), release
  q.now = now_ms()
  return q
end
