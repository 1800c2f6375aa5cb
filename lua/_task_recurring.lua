-- Recurring jobs (node.schedule_job), appended to lua/_tasks_prelude.lua for every task script.
--
-- A schedule is one generation of its key (the job name) whose record carries rc, the spec:
--   k 'i' (interval: p period ms, an anchor ms of the grid) | 'c' (cron: cr expression, tz,
--   nc the next grid points in ms, computed by the Python side, which has the cron library),
--   sa / ea window start / end ms, mr max runs, n occurrences ended, ov overlap ('skip' |
--   'buffer_one' | 'cancel_other'), cw catch-up window ms, j jitter ms, fp fingerprint of
--   spec, task, params and options (an upsert with the same fp changes nothing), od the due
--   time of the current occurrence (its grid point, or when a wake or the run before it made
--   it due): the occurrence's identity, run.scheduled_for.
-- Record flags: ag 1 (run once more right after this run: a wake or a cancel_other due time
--   came during it), oc 1 (the run is being canceled for the next occurrence: cancel_other),
--   ss 1 (suspend the schedule once this run ended).
-- Between runs the record is 'scheduled' in TDELAYED at its next due time (grid point plus
-- jitter); the upkeep's timers fire it from there, like any delayed job. Grid points come
-- from the Redis clock: the interval grid is anchored at the start (or the registration),
-- so it never drifts, and due times missed while nobody ran collapse into one run.

local recur_hint = nil -- set by task_finish: {n = next run in ms (the task chose), c = cron grid}

-- The first grid point strictly after t (ms); nil when the cron points known are spent.
local function grid_after(rc, t)
  if rc.k == 'i' then
    if t < rc.an then return rc.an end
    return rc.an + (math.floor((t - rc.an) / rc.p) + 1) * rc.p
  end
  for _, at in ipairs(rc.nc or {}) do
    if at > t then return at end
  end
  return nil
end

-- The due time of grid point at: up to j ms later, the same for every caller (a hash of the
-- key and the point), so schedules registered together do not fire together.
local function jittered(key, rc, at)
  if (rc.j or 0) <= 0 then return at end
  return at + tonumber(string.sub(redis.sha1hex(key .. '@' .. at), 1, 8), 16) % (rc.j + 1)
end

-- The window or max_runs is spent: no occurrence at grid point at.
local function spent(rc, at)
  return (rc.mr and (rc.n or 0) >= rc.mr) or (at and rc.ea and at > rc.ea) or false
end

-- An occurrence starts now (or waits for a slot). With cancel_other, the next grid point
-- stays in TDELAYED meanwhile: when it comes, the run is canceled for the next occurrence.
local function start_now(key, rec, now)
  redis.call('ZREM', TDELAYED, key)
  rec.due = now
  place(key, rec, now)
  if rec.rc.ov == 'cancel_other' then
    local at = grid_after(rec.rc, now)
    if at then redis.call('ZADD', TDELAYED, jittered(key, rec.rc, at), key) end
  end
end

-- A schedule's due time that is now the earliest of all is told to every node's tasks layer
-- (['due', in ms]), so each arms its timer at it: the node that wrote it may die before it.
local function tell_due(key, due, now)
  if redis.call('ZRANGE', TDELAYED, 0, 0)[1] ~= key then return end
  for _, node in ipairs(redis.call('SMEMBERS', TNODES)) do
    send(node, {'due', math.max(0, due - now)})
  end
end

-- The schedule waits for the occurrence at grid point at (nil or past: due now, placed at once).
local function schedule_at(key, rec, at, now)
  redis.call('ZREM', TDELAYED, key)
  if not at or at <= now then
    rec.rc.od = now
    start_now(key, rec, now)
    return
  end
  rec.rc.od, rec.due = at, jittered(key, rec.rc, at)
  set_status(key, rec, 'scheduled')
  save_task(key, rec)
  redis.call('ZADD', TDELAYED, rec.due, key)
  tell_due(key, rec.due, now)
end

-- An occurrence ended (finish() of the prelude calls this for a schedule's record): the
-- next one is scheduled and true returned, or false when the window or max_runs is spent
-- (the generation then ends as 'ended'). The next run: right away after a wake or a
-- cancel_other due time during the run, or with buffer_one when a grid point passed
-- during it; else when the task said (NextRunIn), else the next grid point after now
-- (skip: the points that passed during the run are dropped). Each occurrence gets a fresh
-- retry budget.
function recur(key, rec, now)
  local rc, hint = rec.rc, recur_hint or {}
  recur_hint = nil
  rc.n = (rc.n or 0) + 1
  local passed = grid_after(rc, rc.od or now)
  if hint.c then rc.nc = hint.c end
  local at
  if rec.ag == 1 then
    at = now
  elseif hint.n and hint.n >= 0 then
    at = now + hint.n
  elseif rc.ov == 'buffer_one' and passed and passed <= now then
    at = now
  else
    at = grid_after(rc, now)
  end
  free_slot(key, rec)
  rec.w, rec.a, rec.ni, rec.ag, rec.oc, rec.sa = '', 0, 0, nil, nil, nil
  if spent(rc, at) then return false end
  if rec.ss == 1 then
    rec.ss, rc.od = nil, at or now
    set_status(key, rec, 'suspended')
    save_task(key, rec)
    return true
  end
  schedule_at(key, rec, at, now)
  return true
end

-- A schedule's due time came (the upkeep found it in TDELAYED). Idle: the occurrence is
-- placed, unless it is later than the catch-up window (then it waits for the next grid
-- point). Running with cancel_other: the run is canceled and the next one starts once its
-- code stopped. With skip and buffer_one a run in flight is left alone (its finish decides).
local function fire_recurring(key, rec, now)
  redis.call('ZREM', TDELAYED, key)
  local rc = rec.rc
  if rec.s == 'scheduled' then
    if rc.cw and rec.a == 0 and now - rec.due > rc.cw then
      local at = grid_after(rc, now)
      if spent(rc, at) then finish(key, rec, 'ended', now) else schedule_at(key, rec, at, now) end
      return
    end
    start_now(key, rec, now)
  elseif rc.ov == 'cancel_other' and rec.s == 'running' and rec.cf ~= 1 then
    rec.ag, rec.oc = 1, 1
    save_task(key, rec)
    send(node_of(rec.w), {'cancel', key, rec.w, rec.e})
  elseif rc.ov == 'cancel_other' and (rec.s == 'starting' or rec.s == 'queued') then
    local at = grid_after(rc, now)  -- not started yet: it serves this due time; keep the next
    if at then redis.call('ZADD', TDELAYED, jittered(key, rc, at), key) end
  end
end

-- Place the delayed jobs that are due, up to limit (task_fire, task_maintain); returns how many.
local function fire_due(now, limit)
  local keys = redis.call('ZRANGEBYSCORE', TDELAYED, '-inf', now, 'LIMIT', 0, limit)
  for _, key in ipairs(keys) do
    local rec = load_task(key)
    if rec and rec.rc then
      fire_recurring(key, rec, now)
    elseif rec and rec.s == 'scheduled' then
      place(key, rec, now)
    else
      redis.call('ZREM', TDELAYED, key)
    end
  end
  return #keys
end
