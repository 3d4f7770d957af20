-- Free a job's idempotency key, but only while it still names this job: its value is
-- "<id> <fingerprint>", and once the key ran out (TTL) another job may have taken it.
local function release_unique(ukey, id)
  if not ukey or ukey == '' then return end
  local stored = redis.call('GET', ukey)
  if stored and string.sub(stored, 1, #id + 1) == id .. ' ' then redis.call('DEL', ukey) end
end
