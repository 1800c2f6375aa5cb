-- task_control: pause, resume or suspend a generation of a job (README "Pause, resume,
-- suspend": the status x action table), withdraw a pause its run did not acknowledge in
-- time, or only watch it. A run on a worker is flagged (its status) and its owner told
-- (['pause' | 'resume' | 'suspend', key, worker, epoch] to its node's tasks inbox; the upkeep
-- tells it again while the status stays pausing or suspending); a job with no run changes at
-- once: scheduled, queued or starting (not yet claimed) -> suspended; suspended -> placed
-- again (queued or starting) by resume.
-- ARG: key, generation (0: the current), action ('pause' | 'resume' | 'suspend' | 'withdraw'
--      | 'watch'), request id (memo key in tidem; '' for watch), memo ttl ms, waiter node,
--      waiter request (0: none; else added to the record's control waiters while the status
--      is pausing, suspending or canceling, or any non-terminal one for watch: the next status
--      change sends ['done', request, key, status, generation, false]).
-- Returns {outcome, status}: 'ok' with the status after the call; 'invalid' with the status
--   that forbids the action ('' when the generation is over: a later one replaced it);
--   'notsuspendable' (a run whose task was not declared suspendable=True); 'missing'. A
--   retry of the request (its reply lost) returns what the first call did, changing nothing.
-- Invariants: every request is state in the record, so it survives restarts and lost
-- messages; a paused run keeps its worker, slot and epoch; a cancel wins over a suspend (a
-- suspend of a canceling job changes nothing, a cancel of a suspending one upgrades it);
-- only the generation asked for is changed.
local key, wanted, action, request = ARG[1], tonumber(ARG[2]), ARG[3], ARG[4]
local memo_ttl, node, waiter = tonumber(ARG[5]), ARG[6], tonumber(ARG[7])
local now = now_ms()
if request ~= '' then
  local memo = idem_get(request, now)
  if memo then return {memo.o, memo.s} end
end

local WATCHED = {pausing = true, suspending = true, canceling = true}

local function watch(rec, any)
  if waiter > 0 and (WATCHED[rec.s] or (any and not TERMINAL[rec.s])) then
    rec.cw = rec.cw or {}
    if #rec.cw < 64 then rec.cw[#rec.cw + 1] = {node, waiter} end
  end
end

local function flag(rec, status, message)
  set_status(key, rec, status)
  watch(rec, false)
  save_task(key, rec)
  send(node_of(rec.w), {message, key, rec.w, rec.e})
  return {'ok', status}
end

local function suspend_now(rec)
  redis.call('ZREM', TDELAYED, key)
  redis.call('ZREM', ready(rec.q), key)
  local worker = rec.w
  if rec.s == 'starting' then free_slot(key, rec) end  -- its claim will find it suspended
  rec.w = ''
  set_status(key, rec, 'suspended')
  save_task(key, rec)
  if worker ~= '' then refill(worker, now, 1) end
  return {'ok', 'suspended'}
end

local ACTIONS = {
  pause = function(rec)
    if rec.s == 'running' then return flag(rec, 'pausing', 'pause') end
    if rec.s == 'pausing' or rec.s == 'paused' then
      watch(rec, false)
      save_task(key, rec)
      return {'ok', rec.s}
    end
    return {'invalid', rec.s}
  end,
  withdraw = function(rec)
    if rec.s == 'pausing' then return flag(rec, 'running', 'resume') end
    return {'ok', rec.s}
  end,
  resume = function(rec)
    if rec.s == 'pausing' or rec.s == 'paused' then return flag(rec, 'running', 'resume') end
    if rec.s == 'suspended' then
      rec.rz = 1
      place(key, rec, now)
      return {'ok', rec.s}
    end
    if rec.s == 'suspending' then
      rec.rr = 1
      save_task(key, rec)
      return {'ok', rec.s}
    end
    if rec.s == 'locked' and rec.ps == 'suspended' then  -- resumed once the hold ends
      rec.ps, rec.rz = 'queued', 1
      save_task(key, rec)
      return {'ok', rec.s}
    end
    if rec.s == 'canceling' or TERMINAL[rec.s] then return {'invalid', rec.s} end
    return {'ok', rec.s}  -- scheduled, queued, starting, running: nothing to resume
  end,
  suspend = function(rec)
    if rec.s == 'scheduled' or rec.s == 'queued' or rec.s == 'starting' then
      return suspend_now(rec)
    end
    if rec.s == 'running' or rec.s == 'pausing' or rec.s == 'paused' then
      if rec.sp ~= 1 then return {'notsuspendable', rec.s} end
      return flag(rec, 'suspending', 'suspend')
    end
    if TERMINAL[rec.s] then return {'invalid', rec.s} end
    if rec.s == 'locked' then  -- suspended once the hold ends (lua/_tasks_holds.lua)
      rec.ps = 'suspended'
      save_task(key, rec)
      return {'ok', rec.s}
    end
    watch(rec, false)  -- suspending, suspended, or canceling (the cancel wins)
    save_task(key, rec)
    return {'ok', rec.s}
  end,
  watch = function(rec)
    watch(rec, true)
    save_task(key, rec)
    return {'ok', rec.s}
  end,
}

local function control()
  local rec = load_task(key)
  if not rec then return {'missing', ''} end
  if wanted > 0 and rec.g ~= wanted then  -- in its key's FIFO (a replace jumps it), or over
    for _, raw in ipairs(redis.call('LRANGE', next_of(key), 0, -1)) do
      local entry = decode(raw)
      if entry and entry.g == wanted then
        if action == 'resume' or action == 'watch' then return {'ok', 'queued'} end
        return {'invalid', 'queued'}
      end
    end
    return {'invalid', ''}  -- over: see its runs
  end
  return ACTIONS[action](rec)
end

local answer = control()
if request ~= '' then idem_set(request, {o = answer[1], s = answer[2]}, memo_ttl, now) end
return answer
