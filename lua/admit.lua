-- admit: singleton admission of a batch of jobs, pool-wide, in one step.
-- ARG: node (dispatcher), membership version the caller routed with, ack grace ms,
--      max queued jobs, load epsilon, the ring's members (sorted worker ids, space-separated;
--      '' when the ring is empty), then groups of 6 (key, payload, request id, the ring's
--      order of candidate workers for the key (space-separated; '' when the ring is empty),
--      ms until the dispatcher withdraws the job if it has not started, retry: 1 when an
--      earlier admit of this request may have run and its reply was lost, else 0).
-- Returns {'shutdown'} | {'stale', current version} | {'ok', {status per job}, backlog} where
--   a status is 'ok' | 'exists' | 'full' and backlog is the number of jobs that wait for a
--   worker (BACKLOG) after this call (0 when no job of the call went to the backlog).
-- Invariants: at most one record per key; records are created only when the caller's ring is
-- current (so each target is a registered worker); a job goes to the first candidate under
-- its load limit (pick_worker: capacity and the bounded-load bound), and waits in the backlog
-- when every worker is at its capacity or the ring is empty; a retried admit of the same
-- (node, request) is 'ok' and admits nothing again, also when its job already ended (then the
-- memo finish_stop left resends the reply); max queued jobs bounds only the backlog: jobs
-- admitted while no worker had room for them (jobs handed to a worker, or released by one,
-- never count).
local node, version, grace, max_queued = ARG[1], ARG[2], tonumber(ARG[3]), tonumber(ARG[4])
local eps, members = tonumber(ARG[5]), split(ARG[6])

local meta = redis.call('HMGET', META, 'version', 'shutdown')
if meta[2] then return {'shutdown'} end
if (meta[1] or '0') ~= version then return {'stale', meta[1] or '0'} end

local now = now_ms()
local backlog  -- SCARD BACKLOG, read only once a job of this call has no worker to go to
local jobs = redis.call('HLEN', JOBS)
local epoch = fresh_epochs((#ARG - 6) / 6)
local out = {}
for i = 7, #ARG, 6 do
  local key, payload, req, cands = ARG[i], ARG[i + 1], tonumber(ARG[i + 2]), ARG[i + 3]
  local withdraw_at, retry = now + tonumber(ARG[i + 4]), ARG[i + 5] == '1'
  local ended = retry and recall(node, req)
  local target = ''
  if not ended and cands ~= '' then
    target = pick_worker(cands, members, load_bound(eps, jobs + 1, #members), '') or ''
  end
  local state = 'assigned'
  if target == '' then
    state = 'queued'
    backlog = backlog or redis.call('SCARD', BACKLOG)
  end
  local rec = {p = payload, c = now, d = node, r = req, q = req, x = withdraw_at, w = target,
               s = state, e = epoch, a = 0}
  epoch = epoch + 1
  if ended then
    send(node, {'reply', req, ended[1], ended[2]})
    out[#out + 1] = 'ok'
  elseif redis.call('HSETNX', JOBS, key, cmsgpack.pack(rec)) == 0 then
    local cur = load_job(key)
    if cur and cur.d == node and cur.q == req then out[#out + 1] = 'ok' else out[#out + 1] = 'exists' end
  elseif target == '' and backlog >= max_queued then
    redis.call('HDEL', JOBS, key)
    out[#out + 1] = 'full'
  else
    out[#out + 1] = 'ok'
    jobs = jobs + 1
    if target == '' then
      backlog = backlog + 1
      redis.call('SADD', BACKLOG, key)
      redis.call('ZADD', PENDING, 0, key)
    else
      moved_load('', target)
      redis.call('ZADD', PENDING, now + grace, key)
      redis.call('SADD', owned(target), key)
      -- The first delivery carries what start() needs and when the dispatcher would withdraw
      -- the job, so a worker sure to start it before then may skip the claim (InboxRouter);
      -- every later delivery is claimed.
      send(node_of(target), {'start', key, target, rec.e, withdraw_at, payload, node, now})
    end
  end
end
return {'ok', out, backlog or 0}
