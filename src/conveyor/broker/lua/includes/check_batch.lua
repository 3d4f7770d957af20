-- Read-only check of a batch of jobs for one queue, before anything is written: every
-- parent must exist, and no idempotency key may name a job with another fingerprint (stored,
-- or earlier in this batch). Returns false when the batch may go, else the refusal reply:
-- {'!', <job index>, <parent id>} or {'!key', <job index>, <stored "<id> <fingerprint>">}.
-- jobs is the decoded batch (see enqueue.lua): [9] fingerprint, [10] key, [12] parents.
local function check_batch(jobs, job_prefix, unique_prefix)
  local fingerprints = {}
  for i = 1, #jobs do
    for _, parent in ipairs(jobs[i][12]) do
      if redis.call('EXISTS', job_prefix .. parent) == 0 then return {'!', i, parent} end
    end
    local ikey, fingerprint = jobs[i][10], jobs[i][9]
    if ikey ~= '' then
      if not fingerprints[ikey] then  -- {fingerprint, "<id> <fingerprint>"} of the key's job
        local stored = redis.call('GET', unique_prefix .. ikey)
        if stored then
          local space = string.find(stored, ' ', 1, true)
          fingerprints[ikey] = {string.sub(stored, space + 1), stored}
        else
          fingerprints[ikey] = {fingerprint, jobs[i][1] .. ' ' .. fingerprint}
        end
      end
      if fingerprints[ikey][1] ~= fingerprint then return {'!key', i, fingerprints[ikey][2]} end
    end
  end
  return false
end
