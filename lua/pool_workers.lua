-- pool_workers: every registered worker with the number of jobs assigned to it.
-- ARG: none.
-- Returns flat triples (worker id, worker record, job count): the count is the size of the
--   worker's owned set (jobs from assigned to stopping), so the cost is one SCARD per worker.
-- Invariant: read-only.
local out = {}
local flat = redis.call('HGETALL', WORKERS)
for i = 1, #flat, 2 do
  out[#out + 1] = flat[i]
  out[#out + 1] = flat[i + 1]
  out[#out + 1] = redis.call('SCARD', owned(flat[i]))
end
return out
