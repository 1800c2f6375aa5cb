-- owned_jobs: what the records say a node's workers own, for level-triggered reconciliation.
-- ARG: the pool incarnation the node belongs to, then worker ids.
-- Returns flat triples (key, epoch, state) per worker, as {worker, {key, epoch, state, ...}};
--   0 when the node's incarnation is not the pool's (the records are not its records: its
--   heartbeat sorts that out first).
-- Invariant: read-only.
if pool_life(ARG[1]) ~= 'same' then return 0 end
local out = {}
for i = 2, #ARG do
  local worker = ARG[i]
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
