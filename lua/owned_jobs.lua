-- owned_jobs: what the records say a node's workers own, for level-triggered reconciliation.
-- ARG: worker ids.
-- Returns flat triples (key, epoch, state) per worker, as {worker, {key, epoch, state, ...}}.
-- Invariant: read-only.
local out = {}
for _, worker in ipairs(ARG) do
  local jobs = {}
  for _, key in ipairs(redis.call('SMEMBERS', owned(worker))) do
    local rec = load_job(key)
    if rec and rec.w == worker then
      jobs[#jobs + 1] = key
      jobs[#jobs + 1] = rec.e
      jobs[#jobs + 1] = rec.s
    end
  end
  out[#out + 1] = {worker, jobs}
end
return out
