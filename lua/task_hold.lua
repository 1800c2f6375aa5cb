-- task_hold: a running job (the holder) takes a hold on another key, so that no job of that
-- key starts until it is released: a scheduled or queued one becomes 'locked' (and so does
-- one admitted later). A key whose run is on a worker, or that another run holds, is 'busy':
-- the holder's record notes what it waits for (wf), its node is put on the wait list (woken
-- with ['free', key]), and it asks again. A wait that would close a cycle of held-by and
-- waiting-for links (walked here, at most 32 links; a longer chain is refused too) is refused.
-- ARG: worker, holder key, epoch, key to hold, node of the holder's worker.
-- Returns {'ok'} (held, also when it was already) | {'busy', key it waits on} |
--   {'cycle', too deep (0/1), chain of keys from the one waited on back to the holder} |
--   {'unowned'} (the holder's run is not this worker's any more).
-- Invariants: a key has at most one holder; a held key's job is never placed; a granted
-- hold is recorded in the holder's record (hk) in the same step, so the holder's end
-- releases it; a retry after a lost reply answers 'ok' again and changes nothing.
local worker, holder, epoch, key, node = ARG[1], ARG[2], tonumber(ARG[3]), ARG[4], ARG[5]
local now = now_ms()
local rec = load_task(holder)
if not rec or rec.w ~= worker or rec.e ~= epoch or TERMINAL[rec.s] then return {'unowned'} end
if key == holder then return {'cycle', 0, holder} end

local h = holder_of(key)
if h and h.h == holder and h.e == epoch then
  if rec.wf then rec.wf = nil; save_task(holder, rec) end
  return {'ok'}
end

local first = link(key, true)
if first then
  local found, deep, chain = cycle_from(holder, first)
  if found then return {'cycle', deep and 1 or 0, unpack(chain)} end
  rec.wf = key
  save_task(holder, rec)
  if h then
    h.wn = add_node(h.wn, node)
    redis.call('HSET', THOLDS, key, cmsgpack.pack(h))
  else
    local running = load_task(key)
    running.hw = add_node(running.hw, node)
    save_task(key, running)
  end
  return {'busy', first}
end

redis.call('HSET', THOLDS, key, cmsgpack.pack({h = holder, e = epoch}))
local held = rec.hk or {}
held[#held + 1] = key
rec.hk, rec.wf = held, nil
save_task(holder, rec)
local target = load_task(key)
if target and (target.s == 'scheduled' or target.s == 'queued') then
  lock_if_held(key, target, target.s)
end
return {'ok'}
