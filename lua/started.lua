-- started: a worker reports how start() went, for a batch of jobs.
-- ARG: groups of 5 (key, worker, epoch, outcome, message); outcome is ok | error | requeue.
-- The job may be 'assigned' (started on the fast path, unclaimed) or 'starting' (claimed).
-- Returns one verdict per job:
--   'run'     keep running (the record now says running);
--   'notes'   keep running, and take the notifications that wait for it;
--   'stop'    a stop was requested meanwhile: call stop(), then report stopped;
--   'unowned' the assignment moved or the record is gone: call stop() locally, report nothing;
--   'done'    start failed or was requeued: nothing runs, nothing to stop.
-- Invariant: only the current assignment (worker, epoch) can change the record.
local out = {}
local now
for i = 1, #ARG, 5 do
  local key, worker, epoch, outcome, msg = ARG[i], ARG[i + 1], tonumber(ARG[i + 2]), ARG[i + 3], ARG[i + 4]
  local rec = load_job(key)
  if not rec or rec.w ~= worker or rec.e ~= epoch then
    if outcome == 'ok' then out[#out + 1] = 'unowned' else out[#out + 1] = 'done' end
  elseif outcome == 'ok' then
    if rec.r then
      send(rec.d, {'reply', rec.r, 'started', ''})
      rec.r = nil
    end
    if rec.s == 'stopping' then
      out[#out + 1] = 'stop'
    else
      rec.s = 'running'
      rec.t = {rec.e, now_ms()}  -- running since (job_info's started_at), for this epoch only
      redis.call('ZREM', PENDING, key)
      if redis.call('EXISTS', notes(key)) == 1 then out[#out + 1] = 'notes' else out[#out + 1] = 'run' end
    end
    save_job(key, rec)
  elseif outcome == 'error' or rec.s == 'stopping' then
    finish_stop(key, rec, msg)
    out[#out + 1] = 'done'
  else
    -- requeue: back to the queue after a backoff that doubles per attempt, capped at 30 s.
    now = now or now_ms()
    rec.a = rec.a + 1
    rec.w, rec.s = '', 'queued'
    save_job(key, rec)
    redis.call('SREM', owned(worker), key)
    redis.call('ZADD', PENDING, now + math.min(30000, 250 * 2 ^ rec.a), key)
    out[#out + 1] = 'done'
  end
end
return out
