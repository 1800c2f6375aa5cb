-- task_cancel: cancel a job. A scheduled or queued one ends at once; a starting or running
-- one is flagged (cf, status canceling) and its owner is told; the owner stops the code and
-- reports 'canceled' (its worker's death ends it as canceled too).
-- ARG: key.
-- Returns {status after the call, generation} | {'missing'}.
-- Invariant: the request is a flag in the record, so it survives restarts of any node; a
-- canceled job never starts again.
local key, now = ARG[1], now_ms()
local rec = load_task(key)
if not rec then return {'missing'} end
if TERMINAL[rec.s] or rec.s == 'canceling' then return {rec.s, rec.g} end
if rec.s == 'scheduled' or rec.s == 'queued' then
  redis.call('ZREM', TDELAYED, key)
  redis.call('ZREM', ready(rec.q), key)
  finish(key, rec, 'canceled', now)
  return {rec.s, rec.g}
end
rec.cf = 1
set_status(key, rec, 'canceling')
save_task(key, rec)
send(node_of(rec.w), {'cancel', key, rec.w, rec.e})
return {rec.s, rec.g}
