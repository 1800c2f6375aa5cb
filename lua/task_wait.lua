-- task_wait: the outcome of a generation of a job, or a waiter registered for it in the same
-- step, so a finish can never slip between the look and the registration.
-- ARG: key, node, request id (0: only look, register nothing), generation (0: the current).
-- Returns {'missing'} | {'corrupt'} | {'superseded'} (a later generation of the key replaced
--   it, and its outcome is no longer kept: its status is in the key's runs) | {'done',
--   status, generation, value} (value: the result when succeeded, else the error; '' when
--   none; a replaced generation's from its kept outcome) | {'waiting', status, generation}.
-- Invariant: at most 64 waiters per generation (later ones fall back to their re-check).
local key, node, request, wanted = ARG[1], ARG[2], tonumber(ARG[3]), tonumber(ARG[4])
local rec = load_task(key)
if rec == nil then return {'missing'} end
if rec == false then return {'corrupt'} end
if wanted > 0 and rec.g ~= wanted then  -- in the key's FIFO (a replace jumps it), or over
  local entries = redis.call('LRANGE', next_of(key), 0, -1)
  for i, raw in ipairs(entries) do
    local entry = decode(raw)
    if entry and entry.g == wanted then
      if request > 0 then
        entry.rw = entry.rw or {}
        if #entry.rw < 64 then
          entry.rw[#entry.rw + 1] = {node, request}
          redis.call('LSET', next_of(key), i - 1, cmsgpack.pack(entry))
        end
      end
      return {'waiting', 'queued', wanted}
    end
  end
  -- not in the FIFO: it ran before an older generation (a replace goes to the FIFO's head)
end
if wanted > 0 and rec.g ~= wanted then  -- a later one replaced it: its kept outcome, if any
  local kept = decode(redis.call('HGET', data(key), 'o' .. wanted) or '')
  if kept and type(kept.r) == 'table' then return {'done', kept.r.s, wanted, kept.v} end
  return {'superseded'}
end
if TERMINAL[rec.s] then
  local field = 'err'
  if rec.s == 'succeeded' then field = 'res' end
  return {'done', rec.s, rec.g, redis.call('HGET', data(key), field) or ''}
end
if request > 0 then
  rec.rw = rec.rw or {}
  if #rec.rw < 64 then
    rec.rw[#rec.rw + 1] = {node, request}
    save_task(key, rec)
  end
end
return {'waiting', rec.s, rec.g}
