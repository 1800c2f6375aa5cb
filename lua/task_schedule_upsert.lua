-- task_schedule_upsert: register a recurring job (node.schedule_job), from any node, any
-- number of times. The same spec changes nothing; a changed one replaces the old at once for
-- the next occurrence (a run in flight finishes as it began); a new key, or one whose last
-- generation ended with another spec, gets a new generation, scheduled at its first due time.
-- ARG: key, task name, queue, params (bytes), options (msgpack: to, ma, mi, rs, kp, kf, pri,
--      tn, lb, as task_submit), spec (msgpack rc without an, n, od: lua/_task_recurring.lua),
--      run now (1: the first occurrence is due at once).
-- Returns {outcome, generation, status, due in ms (-1: not scheduled)}: outcome 'new',
--   'changed', 'same' (an equal spec is registered: nothing written), 'exists' (the key is a
--   plain task job's) or 'shutdown'.
-- Invariants: one record per key, so the pool has one schedule per name however many nodes
--   register it; the grid's anchor is kept while the spec is the same (restarts never shift
--   it); all times are the Redis server's.
local key, task, queue, params = ARG[1], ARG[2], ARG[3], ARG[4]
local opts, spec, run_now = cmsgpack.unpack(ARG[5]), cmsgpack.unpack(ARG[6]), ARG[7] == '1'
local now = now_ms()
if redis.call('HEXISTS', META, 'shutdown') == 1 then return {'shutdown', 0, '', -1} end

local function answer(outcome, rec)
  local due = -1
  if rec.s == 'scheduled' then due = math.max(0, rec.due - now) end
  return {outcome, rec.g, rec.s, due}
end

local old = load_task(key)
if old == false then return {'exists', 0, 'corrupt', -1} end
if old and not old.rc and not TERMINAL[old.s] then return {'exists', old.g, old.s, -1} end
if old and old.rc and old.rc.fp == spec.fp then return answer('same', old) end

spec.an = spec.sa or now
local function first(rec)
  local at = nil
  if not run_now then at = grid_after(rec.rc, now) end
  if spent(rec.rc, at) then
    finish(key, rec, 'ended', now)
  elseif rec.s ~= 'suspended' then
    schedule_at(key, rec, at, now)
  end
end
local function apply(rec)
  rec.t, rec.q, rec.to, rec.ma, rec.mi = task, queue, opts.to or 0, opts.ma or 1, opts.mi or 3
  rec.rs, rec.pri, rec.kp, rec.kf, rec.tn, rec.lb = opts.rs, opts.pri or 0, opts.kp, opts.kf,
    opts.tn, opts.lb
  redis.call('HSET', data(key), 'p', params)
end

if old and old.rc and not TERMINAL[old.s] then
  spec.n, spec.od = old.rc.n, old.rc.od
  old.rc = spec
  apply(old)
  if old.s == 'scheduled' then first(old) else save_task(key, old) end
  return answer('changed', old)
end

if old then unlist(key, old) end
redis.call('DEL', data(key))
local rec = {s = 'new', g = redis.call('HINCRBY', TMETA, 'gen', 1), e = 0, w = '', a = 0,
  ni = 0, c = now, rc = spec}
apply(rec)
redis.call('ZADD', TSCHEDULES, now, key)
first(rec)
return answer('new', rec)
