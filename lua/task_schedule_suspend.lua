-- task_schedule_suspend: suspend a schedule (no occurrence starts until it is resumed; its
-- history and counters stay), or resume it (the next occurrence is its next grid point).
-- A run in flight is not touched: the schedule is suspended once it ended.
-- ARG: key, action ('suspend' | 'resume'), next cron grid points (msgpack list of ms; empty
--      for an interval: Lua computes its grid).
-- Returns {outcome, status, due in ms (-1: not scheduled)}: outcome 'ok', 'missing' or
--   'invalid' (the schedule ended: status says how).
-- Invariant: a suspended schedule is in no due index, so nothing fires it.
local key, action = ARG[1], ARG[2]
local now = now_ms()
local rec = load_task(key)
if not rec or not rec.rc then return {'missing', '', -1} end
if TERMINAL[rec.s] then return {'invalid', rec.s, -1} end
local grid = cmsgpack.unpack(ARG[3])
if #grid > 0 then rec.rc.nc = grid end
if action == 'suspend' then
  if rec.s == 'scheduled' or rec.s == 'queued' then
    redis.call('ZREM', TDELAYED, key)
    redis.call('ZREM', ready(rec.q), key)
    set_status(key, rec, 'suspended')
  elseif rec.s ~= 'suspended' then
    rec.ss = 1
  end
elseif rec.s == 'suspended' then
  local at = grid_after(rec.rc, now)
  if rec.ag == 1 then at = now end
  rec.ag = nil
  if spent(rec.rc, at) then
    finish(key, rec, 'ended', now)
    return {'ok', rec.s, -1}
  end
  schedule_at(key, rec, at, now)
else
  rec.ss = nil
end
save_task(key, rec)
local due = -1
if rec.s == 'scheduled' then due = math.max(0, rec.due - now) end
return {'ok', rec.s, due}
