-- admit: singleton admission of a batch of jobs, pool-wide, in one step.
-- ARG: node (dispatcher), membership version the caller routed with, ack grace ms,
--      max queued jobs, then groups of 5 (key, payload, request id, target worker or '',
--      ms until the dispatcher withdraws the job if it has not started).
-- Returns {'shutdown'} | {'stale', current version} | {'ok', {status per job}} where a status
--   is 'ok' | 'exists' | 'full'.
-- Invariant: at most one record per key; records are created only when the caller's ring is
-- current (so each target is a registered worker); a retried admit of the same request is 'ok'.
local node, version, grace, max_queued = ARG[1], ARG[2], tonumber(ARG[3]), tonumber(ARG[4])

local meta = redis.call('HMGET', META, 'version', 'shutdown')
if meta[2] then return {'shutdown'} end
if (meta[1] or '0') ~= version then return {'stale', meta[1] or '0'} end

local now = now_ms()
local queued = redis.call('ZCARD', PENDING)
local out = {}
for i = 5, #ARG, 5 do
  local key, payload, req, target = ARG[i], ARG[i + 1], tonumber(ARG[i + 2]), ARG[i + 3]
  local withdraw_at = now + tonumber(ARG[i + 4])
  local state = 'assigned'
  if target == '' then state = 'queued' end
  local rec = {p = payload, c = now, d = node, r = req, w = target, s = state, e = 1, a = 0}
  if redis.call('HSETNX', JOBS, key, cmsgpack.pack(rec)) == 0 then
    local cur = load_job(key)
    if cur and cur.d == node and cur.r == req then out[#out + 1] = 'ok' else out[#out + 1] = 'exists' end
  elseif queued >= max_queued then
    redis.call('HDEL', JOBS, key)
    out[#out + 1] = 'full'
  else
    queued = queued + 1
    out[#out + 1] = 'ok'
    if target == '' then
      redis.call('ZADD', PENDING, 0, key)
    else
      redis.call('ZADD', PENDING, now + grace, key)
      redis.call('SADD', owned(target), key)
      -- The first delivery carries what start() needs and when the dispatcher would withdraw
      -- the job, so a worker sure to start it before then may skip the claim (InboxRouter);
      -- every later delivery is claimed.
      send(node_of(target), {'start', key, target, 1, withdraw_at, payload, node, now})
    end
  end
end
return {'ok', out}
