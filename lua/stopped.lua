-- stopped: a worker's stop() returned for jobs whose records say stopping.
-- ARG: triples (key, worker, epoch).
-- Returns, when a job was removed (its slot is free), the number of jobs waiting to be routed
--   (due now in PENDING: the backlog, and jobs released by a dead or departed worker that no
--   worker had room for), so the caller routes them now; else 0.
-- Invariant: the key is free only once its owner has stopped it.
local n = 0
for i = 1, #ARG, 3 do
  local key, worker, epoch = ARG[i], ARG[i + 1], tonumber(ARG[i + 2])
  local rec = load_job(key)
  if rec and rec.w == worker and rec.e == epoch and rec.s == 'stopping' then
    finish_stop(key, rec, 'job was stopped before it started')
    n = n + 1
  end
end
if n > 0 then return redis.call('ZCOUNT', PENDING, 0, 0) end
return 0
