-- task_purge: delete a bounded part of an ended pool's tasks keys (after purge.lua deleted the
-- core's); called again until it answers 'done'.
-- ARG: limit (entries of each structure per call).
-- Returns 'more' or 'done'.
-- Invariant: only an ended pool's keys go: once a new life of the pool began (the core meta
-- hash exists again) nothing is deleted. Keys are found from the records, never by a scan.
local limit = tonumber(ARG[1])
if redis.call('EXISTS', META) == 1 then return 'done' end
for _, key in ipairs(redis.call('HRANDFIELD', TJOBS, limit)) do
  local rec = load_task(key)
  if rec then
    redis.call('DEL', ready(rec.q), active(rec.q))
  end
  forget(key, rec or nil)
end
for _, id in ipairs(redis.call('HRANDFIELD', TWORKERS, limit)) do
  local wrec = decode(redis.call('HGET', TWORKERS, id) or '')
  if wrec and wrec.q then
    for queue, _ in pairs(wrec.q) do redis.call('DEL', wq(id, queue), ready(queue), active(queue)) end
  end
  redis.call('DEL', wruns(id))
  redis.call('HDEL', TWORKERS, id)
end
for _, node in ipairs(redis.call('SRANDMEMBER', TNODES, limit)) do
  redis.call('DEL', tinbox(node))
  redis.call('SREM', TNODES, node)
end
for _, queue in ipairs(redis.call('HRANDFIELD', TQUEUES, limit)) do
  redis.call('DEL', ready(queue), active(queue))
  redis.call('HDEL', TQUEUES, queue)
end
if redis.call('HLEN', TJOBS) + redis.call('HLEN', TWORKERS) + redis.call('SCARD', TNODES)
    + redis.call('HLEN', TQUEUES) > 0 then
  return 'more'
end
for status, _ in pairs(TERMINAL) do redis.call('DEL', by_status(status)) end
for _, status in ipairs({'new', 'scheduled', 'queued', 'locked', 'starting', 'running', 'canceling',
    'pausing', 'paused', 'suspending', 'suspended'}) do
  redis.call('DEL', by_status(status))
end
redis.call('DEL', TDELAYED, TDONE, TMETA, TIDEM, TIDEM_EXPIRY, THOLDS)
return 'done'
