-- task_schedule_wake: run a schedule soon (Boundary's UpdateJobNextRunInAtLeast): its next
-- occurrence is due within the given ms, or stays earlier if it already is. While a run is
-- in flight, the wake is kept in the record and that run's end schedules the next one at
-- once, so a wake is never lost; a run placed but not started yet (or waiting for a slot)
-- has not begun its work, so it serves the wake.
-- ARG: key, within ms.
-- Returns {outcome, status, due in ms}: outcome 'ok' (due in ms; 0: placed now), 'again' (the
--   run under way runs once more right after), 'missing' (no schedule of that name) or
--   'invalid' (suspended, being canceled, or ended: status says which).
-- Invariant: a wake only ever moves the next run earlier; the grid is not moved.
local key, within = ARG[1], tonumber(ARG[2])
local now = now_ms()
local rec = load_task(key)
if not rec or not rec.rc then return {'missing', '', -1} end
if TERMINAL[rec.s] or rec.s == 'suspended' or rec.s == 'canceling' then
  return {'invalid', rec.s, -1}
end
if rec.s == 'starting' or rec.s == 'queued' then return {'ok', rec.s, 0} end
if rec.s == 'scheduled' then
  local at = now + within
  if at >= rec.due then return {'ok', rec.s, math.max(0, rec.due - now)} end
  if within <= 0 then
    rec.rc.od = now
    start_now(key, rec, now)
    return {'ok', rec.s, 0}
  end
  rec.due, rec.rc.od = at, at  -- a woken occurrence is its own, not the grid point's
  save_task(key, rec)
  redis.call('ZADD', TDELAYED, at, key)
  tell_due(key, at, now)
  return {'ok', rec.s, within}
end
rec.ag = 1
save_task(key, rec)
return {'again', rec.s, -1}
