-- claim: a worker takes the starts it read from its inbox, before calling start().
-- ARG: triples (key, worker, epoch).
-- Returns one entry per triple: 0 (not claimable: withdrawn, moved, already claimed, or the
--   pool is shutting down) or
--   {payload, created ms, attempts, dispatching node}.
-- Invariant: an assignment (key, epoch) is claimed at most once, and never after it was
-- withdrawn or moved; so start() runs at most once per assignment.
local out = {}
local closing = redis.call('HEXISTS', META, 'shutdown') == 1
for i = 1, #ARG, 3 do
  local key, worker, epoch = ARG[i], ARG[i + 1], tonumber(ARG[i + 2])
  local rec = not closing and load_job(key)
  if rec and rec.w == worker and rec.e == epoch and rec.s == 'assigned' then
    rec.s = 'starting'
    save_job(key, rec)
    out[#out + 1] = {rec.p, rec.c, rec.a, rec.d}
  else
    out[#out + 1] = 0
  end
end
return out
