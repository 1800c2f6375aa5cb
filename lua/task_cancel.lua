-- task_cancel: cancel a generation of a job. A scheduled, queued, locked or suspended one
-- ends at once, and so does one still waiting in its key's FIFO or placed on a worker that
-- has not claimed it (starting); one whose code runs (running, pausing, paused,
-- suspending: a cancel wins over a suspend) is flagged (cf, status
-- canceling) and its owner is told; the owner stops the code and reports 'canceled' (its
-- worker's death ends it as canceled too).
-- ARG: key, generation (0: the current), request id (the memo's key in tidem), memo ttl ms.
-- Returns {status after the call, generation} | {'missing', 0}; a retry of the request (its
-- reply lost) returns what the first call did and changes nothing.
-- Invariant: the request is a flag in the record, so it survives restarts of any node; a
-- canceled generation never starts again; a retried cancel of the current generation never
-- reaches the next one (the key's FIFO promoted it meanwhile).
local key, wanted, request, memo_ttl = ARG[1], tonumber(ARG[2]), ARG[3], tonumber(ARG[4])
local now = now_ms()
local memo = idem_get(request, now)
if memo then return {memo.s, memo.g} end

local function cancel()
  local rec = load_task(key)
  if not rec then return {'missing', 0} end
  if wanted > 0 and rec.g ~= wanted then  -- in the key's FIFO (a replace jumps it), or over
    for _, raw in ipairs(redis.call('LRANGE', next_of(key), 0, -1)) do
      local entry = decode(raw)
      if entry and entry.g == wanted then
        redis.call('LREM', next_of(key), 1, raw)
        redis.call('HDEL', data(key), 'p' .. wanted)
        for _, waiter in ipairs(entry.rw or {}) do
          send(waiter[1], {'done', waiter[2], key, 'canceled', wanted, ''})
        end
        return {'canceled', wanted}
      end
    end
    if rec.g > wanted then return {'canceled', wanted} end  -- long over
    return {'missing', 0}
  end
  if TERMINAL[rec.s] or rec.s == 'canceling' then return {rec.s, rec.g} end
  if rec.s == 'scheduled' or rec.s == 'queued' or rec.s == 'locked' or rec.s == 'suspended' then
    redis.call('ZREM', TDELAYED, key)
    redis.call('ZREM', ready(rec.q), key)
    finish(key, rec, 'canceled', now)
    return {'canceled', rec.g}
  end
  if rec.s == 'starting' then
    cancel_unclaimed(key, rec, now)
    return {'canceled', rec.g}
  end
  rec.cf = 1
  set_status(key, rec, 'canceling')
  save_task(key, rec)
  send(node_of(rec.w), {'cancel', key, rec.w, rec.e})
  return {rec.s, rec.g}
end

local answer = cancel()
idem_set(request, {s = answer[1], g = answer[2]}, memo_ttl, now)
return answer
