-- task_claim: a worker takes the runs it was handed (the start messages of its node's inbox,
-- or the starts the maintenance found it had not taken): starting -> running.
-- ARG: worker, then (key, epoch) pairs.
-- Returns per pair 0 (not this worker's run any more, or already taken) or {task, params,
--   attempt, timeout ms, retry spec, generation, tenant, labels, cancel requested (0/1),
--   stall timeout ms, interrupts}.
-- Invariant: a run starts only under the assignment (worker, epoch) the record names, once.
local worker, now, out = ARG[1], now_ms(), {}
for i = 2, #ARG, 2 do
  local key, epoch = ARG[i], tonumber(ARG[i + 1])
  local rec = load_task(key)
  if rec and rec.w == worker and rec.e == epoch and rec.s == 'starting' then
    rec.a, rec.sa = rec.a + 1, now
    set_status(key, rec, 'running')
    save_task(key, rec)
    out[#out + 1] = {rec.t, redis.call('HGET', data(key), 'p') or '', rec.a, rec.to, cmsgpack.pack(rec.rs or {}),
                     rec.g, rec.tn or '', cmsgpack.pack(rec.lb or {}), rec.cf or 0,
                     rec.sl or 0, rec.ni or 0}
  else
    out[#out + 1] = 0
  end
end
return out
