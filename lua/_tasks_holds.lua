-- Holds (Hyperspot's locked state), appended to lua/_tasks_prelude.lua for every task script.
--
-- A running job (the holder) holds another job's key: while THOLDS[key] names it, no job of
-- that key is placed; one that is scheduled or queued, or becomes so, shows 'locked' (its
-- record keeps the status to go back to in ps: scheduled, queued, or suspended when
-- task_control suspended it meanwhile) and is out of the ready and delayed sets. A suspended
-- job is not locked (it is not placed anyway); its resume meets the hold in place().
--   THOLDS[key] = msgpack {h = holder key, e = holder epoch, wn = nodes waiting to hold it}
--   holder record: hk = keys it holds, wf = the key its run waits to hold (one at a time)
--   record of a run on a worker: hw = nodes whose runs wait for it to end
-- A hold ends by task_release, or with the holder's run: free_slot() (every path by which a
-- run leaves its worker: finish, retry, interruption, death) releases what it held. A node in
-- a wait list gets ['free', key] when that key may be free; its waiters try again.

local MAX_WAKE = 64 -- nodes per wait list; beyond, a waiter finds out by its own recheck

local function holder_of(key)
  local raw = redis.call('HGET', THOLDS, key)
  if not raw then return nil end
  return decode(raw)
end

local function wake(nodes, key)
  for _, node in ipairs(nodes or {}) do send(node, {'free', key}) end
end

local function add_node(list, node)
  list = list or {}
  for _, n in ipairs(list) do if n == node then return list end end
  if #list < MAX_WAKE then list[#list + 1] = node end
  return list
end

-- A job of a held key that would be placed (or scheduled) is locked instead.
function lock_if_held(key, rec, previous)
  if redis.call('HEXISTS', THOLDS, key) == 0 then return false end
  rec.ps, rec.w = previous, ''
  redis.call('ZREM', ready(rec.q), key)
  redis.call('ZREM', TDELAYED, key)
  set_status(key, rec, 'locked')
  save_task(key, rec)
  return true
end

-- The hold on ``key`` ended: its locked job goes back to what it was (placed if due).
local function unlock(key, now)
  local rec = load_task(key)
  if not rec or rec.s ~= 'locked' then return end
  local previous = rec.ps
  rec.ps = nil
  if previous == 'scheduled' and rec.due and rec.due > now then
    set_status(key, rec, 'scheduled')
    save_task(key, rec)
    redis.call('ZADD', TDELAYED, rec.due, key)
  elseif previous == 'suspended' then  -- suspended while locked (task_control)
    set_status(key, rec, 'suspended')
    save_task(key, rec)
  else
    place(key, rec, now)
  end
end

-- The holder ``holder`` (record ``rec``, saved by the caller) gives up its hold on ``key``.
local function release_hold(holder, rec, key, now)
  local h = holder_of(key)
  if h and h.h == holder and h.e == rec.e then
    redis.call('HDEL', THOLDS, key)
    wake(h.wn, key)
    unlock(key, now)
  end
  local kept = {}
  for _, k in ipairs(rec.hk or {}) do if k ~= key then kept[#kept + 1] = k end end
  rec.hk = #kept > 0 and kept or nil
end

-- The run of ``key`` leaves its worker: its holds end, its wait too, and its waiters wake.
function release_holds(key, rec)
  if not (rec.hk or rec.wf or rec.hw) then return end
  local now = now_ms()
  for _, k in ipairs(rec.hk or {}) do release_hold(key, rec, k, now) end
  rec.hk, rec.wf = nil, nil
  wake(rec.hw, key)
  rec.hw = nil
end

-- The next link of the held-by / waiting-for chain from ``key``: its holder; else, while the
-- key's run is on a worker, that run itself (``first``: what a new waiter waits on) or the
-- key that run waits to hold.
local function link(key, first)
  local h = holder_of(key)
  if h then return h.h end
  local rec = load_task(key)
  if rec and rec.w ~= '' and not TERMINAL[rec.s] then
    if first then return key end
    return rec.wf
  end
  return nil
end

-- Would ``holder`` waiting on ``first`` close a cycle? The held-by / waiting-for chain from
-- ``first`` is walked up to MAX_HOPS links: {found, too_deep, chain of keys}.
local MAX_HOPS = 32
local function cycle_from(holder, first)
  local chain, at = {}, first
  for _ = 1, MAX_HOPS do
    if at == nil then return false, false, chain end
    chain[#chain + 1] = at
    if at == holder then return true, false, chain end
    at = link(at, false)
  end
  return at ~= nil, at ~= nil, chain
end
