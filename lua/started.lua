-- started: a worker reports how start() went, for a batch of jobs.
-- ARG: groups of 5 (key, worker, epoch, outcome, message); outcome is ok | error | requeue.
--      For a requeue the message is "<delay ms, or -1 for the backoff> <max attempts>".
-- The job may be 'assigned' (started on the fast path, unclaimed) or 'starting' (claimed).
-- Returns one verdict per job:
--   'run'     keep running (the record now says running);
--   'notes'   keep running, and take the notifications that wait for it;
--   'stop'    a stop was requested meanwhile: call stop(), then report stopped;
--   'unowned' the assignment moved or the record is gone: call stop() locally, report nothing;
--   'done'    start failed, or was requeued and its attempts are used up (the job is deleted
--             and its dispatcher told so): nothing runs, nothing to stop;
--   {'requeue', ms} requeued: nothing runs here; the job is due for its next attempt in ms
--             (the caller routes it then; the heartbeat's overdue scan is the fallback).
-- Invariants: only the current assignment (worker, epoch) can change the record; a requeued
-- job is due after the delay asked for, or 0.5 s doubling per attempt up to 30 s, on the Redis
-- clock, and is tried at most max attempts times whether or not its dispatcher still waits.
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
  elseif outcome == 'error' then
    finish_stop(key, rec, msg)
    out[#out + 1] = 'done'
  elseif rec.s == 'stopping' then
    finish_stop(key, rec, 'job was stopped before it started')
    out[#out + 1] = 'done'
  else
    local delay, max_attempts = string.match(msg, '^(-?%d+) (%d+)$')
    delay, max_attempts = tonumber(delay or -1), tonumber(max_attempts or 1)
    if rec.a + 1 >= max_attempts then
      finish_stop(key, rec, 'start() raised Requeue on all ' .. max_attempts .. ' attempts')
      out[#out + 1] = 'done'
    else
      -- Back to the queue, due after the delay; its dispatcher (if it still waits) waits on.
      now = now or now_ms()
      rec.a = rec.a + 1
      if delay < 0 then delay = math.min(30000, 500 * 2 ^ (rec.a - 1)) end
      rec.w, rec.s = '', 'queued'
      save_job(key, rec)
      redis.call('SREM', owned(worker), key)
      redis.call('ZADD', PENDING, now + delay, key)
      if rec.r then send(rec.d, {'reply', rec.r, 'requeued', tostring(delay)}) end
      out[#out + 1] = {'requeue', delay}
    end
  end
end
return out
