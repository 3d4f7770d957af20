#!lua flags=no-writes
-- check.lua: the read-only first pass of a batch that spans several queues (one call per
-- queue, each queue on its own Cluster slot): would enqueue.lua refuse this queue's part?
-- Nothing is written, so every queue is checked before any queue is written.
--
-- KEYS[1]  events STREAM (declares the queue's slot; not read)
--
-- ARGV[1]  job key prefix "{<prefix>:<queue>}:job:" (same hash tag, so same Cluster slot)
-- ARGV[2]  unique key prefix "{<prefix>:<queue>}:unique:" (same hash tag)
-- ARGV[3]  the jobs, the JSON array enqueue.lua takes
--
-- Returns data (codes.py DATA_REPLIES): {} when enqueue.lua would accept the batch as
-- things stand, else its refusal: {'!', <job index>, <parent id>} or
-- {'!key', <job index>, <stored "<id> <fingerprint>">}.
-- @include check_batch

local events = KEYS[1]
local refused = check_batch(cjson.decode(ARGV[3]), ARGV[1], ARGV[2])
if refused then return refused end
return {}
