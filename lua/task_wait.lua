-- task_wait: the outcome of a job, or a waiter registered for it in the same step, so a
-- finish can never slip between the look and the registration.
-- ARG: key, node, request id (0: only look, register nothing).
-- Returns {'missing'} | {'corrupt'} | {'done', status, generation, value} (value: the result
--   when succeeded, else the error; '' when none) | {'waiting', status, generation}.
-- Invariant: at most 64 waiters per job (later ones fall back to their re-check).
local key, node, request = ARG[1], ARG[2], tonumber(ARG[3])
local rec = load_task(key)
if rec == nil then return {'missing'} end
if rec == false then return {'corrupt'} end
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
