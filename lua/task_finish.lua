-- task_finish: the owner reports how its runs ended (a batch: the reports of one event-loop
-- turn); the next state of each is decided here.
-- ARG: worker, then per report 6 fields: key, epoch, outcome ('succeeded' | 'failed' |
--      'timed_out' | 'canceled' | 'skipped' | 'interrupted' (fenced) | 'stalled' (no progress
--      for its stall timeout) | 'shutdown' | 'suspended'), value (result msgpack when
--      succeeded, else the error msgpack {type, message, traceback}), retry in ms (-1: the
--      policy says no retry; only for failed and timed_out), and for a schedule's run (''
--      otherwise) the msgpack {n = next run in ms the task chose (-1: none), c = next cron
--      grid points ms}.
-- Returns {{verdict, status, due} per report, handed}: verdict 'ok' or 'unowned' (the run
-- is not this worker's any more: nothing was written for it), the job's status after it,
-- in how many ms it is due when scheduled (-1 otherwise), and how many queued runs were
-- handed to this worker's freed slots.
-- Invariants: every write is fenced by (worker, epoch); a finished generation never runs
-- again; an attempt is charged only for a run that ended by itself (failed, timed out);
-- interruptions (fenced, stalled) count against max_interrupts instead ('shutdown' counts
-- against neither, nor does a suspend), recorded as outcome 'interrupted' with the reason;
-- a cancel wins over a suspend (a suspended run with the cancel flag ends canceled), and a
-- run being suspended that fails with a retry left is suspended instead;
-- a freed slot takes the head of the worker's ready queues at once (handoff, FIFO).
local worker, now = ARG[1], now_ms()
local reasons = {interrupted = 'fenced', stalled = 'stalled', shutdown = 'shutdown'}

local function report(key, epoch, outcome, value, retry_in, hint)
  recur_hint = nil
  if hint ~= '' then recur_hint = decode(hint) end
  local rec = load_task(key)
  if not rec or rec.w ~= worker or rec.e ~= epoch or TERMINAL[rec.s] then
    return {'unowned', rec and rec.s or '', -1}
  end

  if reasons[outcome] then
    interrupt(key, rec, now, outcome ~= 'shutdown', reasons[outcome])
  elseif outcome == 'suspended' then
    record_run(key, rec, outcome, now, nil)
    if rec.cf == 1 then finish(key, rec, 'canceled', now) else suspended(key, rec, now, true) end
  elseif outcome == 'succeeded' then
    record_run(key, rec, outcome, now, '')
    redis.call('HSET', data(key), 'res', value)
    finish(key, rec, 'succeeded', now)
  else
    record_run(key, rec, outcome, now, decode(value))
    redis.call('HSET', data(key), 'err', value)
    local retry = (outcome == 'failed' or outcome == 'timed_out') and retry_in >= 0
      and rec.cf ~= 1 and (rec.ma == 0 or rec.a < rec.ma)
    if retry and rec.s == 'suspending' then
      suspended(key, rec, now, false)
    elseif retry then
      free_slot(key, rec)
      rec.w, rec.due = '', now + retry_in
      set_status(key, rec, 'scheduled')
      save_task(key, rec)
      redis.call('ZADD', TDELAYED, rec.due, key)
    else
      if rec.cf == 1 and outcome ~= 'succeeded' then outcome = 'canceled' end
      finish(key, rec, outcome, now)
    end
  end
  local due = -1
  if rec.s == 'scheduled' then due = math.max(0, rec.due - now) end
  return {'ok', rec.s, due}
end

local out = {}
for at = 2, #ARG, 6 do
  out[#out + 1] = report(ARG[at], tonumber(ARG[at + 1]), ARG[at + 2], ARG[at + 3],
    tonumber(ARG[at + 4]), ARG[at + 5])
end
return {out, refill(worker, now, 8 * #out)}
