-- Record one transition: bump the job's event sequence and append the event to the stream,
-- in the same script as the state change, so the log can never disagree with the state.
-- `extra` is a flat list of further field/value pairs. `seq`, when given, is the sequence
-- number the caller already wrote into the job hash with its own HSET (one call fewer).
local function emit(stream, maxlen, jobkey, job_id, event, status, now, extra, seq)
  seq = seq or redis.call('HINCRBY', jobkey, 'seq', 1)
  local fields = {'job', job_id, 'event', event, 'status', status, 'seq', seq, 'ts', now}
  for i = 1, #extra do fields[#fields + 1] = extra[i] end
  return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
end
