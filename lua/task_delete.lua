-- task_delete: delete a job that does not run: a finished one, or a scheduled, queued or
-- suspended one (which is canceled first), with the generations waiting in its per-key queue; their
-- waiters are told (they find no job).
-- ARG: key.
-- Returns {'ok'} | {'missing'} | {'invalid', status} (on a worker: cancel it first).
-- Invariant: a job on a worker is never deleted under it (its owner's reports would find no
-- record and its slot would leak).
local key = ARG[1]
local rec = load_task(key)
if rec == nil then return {'missing'} end
if rec and ON_WORKER[rec.s] then
  return {'invalid', rec.s}
end
if rec then
  redis.call('ZREM', TDELAYED, key)
  redis.call('ZREM', ready(rec.q), key)
  if rec.ik then idem_forget({rec.ik}) end
  for _, waiter in ipairs(rec.rw or {}) do send(waiter[1], {'done', waiter[2], key, 'deleted'}) end
end
for _, raw in ipairs(redis.call('LRANGE', next_of(key), 0, -1)) do
  local entry = decode(raw)
  for _, waiter in ipairs(entry and entry.rw or {}) do
    send(waiter[1], {'done', waiter[2], key, 'deleted'})
  end
end
forget(key, rec or nil)
return {'ok'}
