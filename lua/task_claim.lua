-- task_claim: a worker takes the runs it was handed (the start messages of its node's inbox,
-- or the starts the maintenance found it had not taken): starting -> running.
-- ARG: worker, its suspendable task names (msgpack list), then (key, epoch) pairs.
-- Returns per pair 0 (not this worker's run any more, or already taken) or {task, params,
--   attempt, timeout ms, retry spec, generation, tenant, labels, cancel requested (0/1),
--   stall timeout ms, interrupts, resumed (0/1: the generation was suspended and resumed),
--   checkpoint state ('' none), last progress (flat completed, total, details, updated ms;
--   empty when none), schedule (msgpack {k, cr, tz, od} of a recurring job's spec, od the
--   due time of the occurrence: run.scheduled_for; '' for a plain job)}.
-- Invariant: a run starts only under the assignment (worker, epoch) the record names, once;
-- the record says whether its task is suspendable (the worker that runs it has the code).
local worker, now, out = ARG[1], now_ms(), {}
local suspendable = {}
for _, name in ipairs(cmsgpack.unpack(ARG[2])) do suspendable[name] = true end
for i = 3, #ARG, 2 do
  local key, epoch = ARG[i], tonumber(ARG[i + 1])
  local rec = load_task(key)
  if rec and rec.w == worker and rec.e == epoch and rec.s == 'starting' then
    rec.a, rec.sa = rec.a + 1, now
    rec.sp = suspendable[rec.t] and 1 or nil
    set_status(key, rec, 'running')
    save_task(key, rec)
    local f = redis.call('HMGET', data(key), 'p', 'ck', 'pc', 'pt', 'pd', 'pu')
    local progress = {}
    if f[3] then progress = {f[3], f[4], f[5], f[6]} end
    out[#out + 1] = {rec.t, f[1] or '', rec.a, rec.to, cmsgpack.pack(rec.rs or {}),
                     rec.g, rec.tn or '', cmsgpack.pack(rec.lb or {}), rec.cf or 0,
                     rec.sl or 0, rec.ni or 0, rec.rz or 0, f[2] or '', progress,
                     rec.rc and cmsgpack.pack({k = rec.rc.k, cr = rec.rc.cr, tz = rec.rc.tz,
                       od = rec.rc.od}) or ''}
  else
    out[#out + 1] = 0
  end
end
return out
