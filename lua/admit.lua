-- admit: singleton admission of a job, pool-wide, in one step.
-- ARG: key, payload, node (dispatcher), request id, membership version the caller routed with,
--      target worker ('' when the pool has none), ack grace ms, max queued jobs.
-- Returns {'ok'} | {'exists'} | {'full'} | {'shutdown'} | {'stale', current version}.
-- Invariant: at most one record per key; a record is created only when the caller's ring is
-- current, so the target worker is registered; a retried admit of the same request is 'ok'.
local key, payload, node, req, version, target = ARG[1], ARG[2], ARG[3], tonumber(ARG[4]), ARG[5], ARG[6]
local grace, max_queued = tonumber(ARG[7]), tonumber(ARG[8])

local meta = redis.call('HMGET', META, 'version', 'shutdown')
if meta[2] then return {'shutdown'} end
if (meta[1] or '0') ~= version then return {'stale', meta[1] or '0'} end

local now = now_ms()
local state = 'assigned'
if target == '' then state = 'queued' end
local rec = {p = payload, c = now, d = node, r = req, w = target, s = state, e = 1, a = 0}
if redis.call('HSETNX', JOBS, key, cmsgpack.pack(rec)) == 0 then
  local cur = load_job(key)
  if cur and cur.d == node and cur.r == req then return {'ok'} end
  return {'exists'}
end
if redis.call('ZCARD', PENDING) >= max_queued then
  redis.call('HDEL', JOBS, key)
  return {'full'}
end
if target == '' then
  redis.call('ZADD', PENDING, 0, key)
else
  redis.call('ZADD', PENDING, now + grace, key)
  redis.call('SADD', owned(target), key)
  send(node_of(target), {'start', key, target, 1})
end
return {'ok'}
