-- task_maintain: what keeps the tasks layer moving without a submit or a finish, run by
-- every node that uses tasks a few times per worker TTL (and when a due time comes):
-- interrupts the runs of workers whose node's lease expired and re-places them, places the
-- scheduled jobs that are due and the queued ones that free slots can take, names the starts
-- this node's workers were handed but have not taken (their message may be lost). Finished
-- jobs are purged by task_retain.
-- ARG: node, worker ttl ms, limit (placements per call), own worker ids...
-- Returns {next due ms (-1: none), now ms, flat (key, worker, epoch) starts not taken,
--   runs interrupted, own workers not registered (reaped while this node was cut off: they
--   join again), flat (key, worker, epoch, status) own runs with a request pending (pausing,
--   suspending, canceling: told again, in case its message was lost), flat (key, worker,
--   epoch) of every run the records give to own workers past its claim (running, canceling,
--   pausing, paused, suspending): the upkeep hands back those the worker does not have}.
-- Invariants: a worker's runs move only once its node's lease expired, never on evidence
-- from a gap in the pool's heartbeats (the core heartbeat's amnesty: after a gap every lease
-- gets one more TTL); each due job is placed by one caller (the ZREM and the placement are
-- one step); work per call is bounded by the limit and the number of workers and nodes.
local node, ttl, limit = ARG[1], tonumber(ARG[2]), tonumber(ARG[3])
local now = now_ms()

local meta = redis.call('HMGET', META, 'beat', 'amnesty')
local last, amnesty = tonumber(meta[1]), tonumber(meta[2]) or 0
local may_reap = last ~= nil and now - last <= ttl / 2 and now >= amnesty

if alive(node, now) then
  if redis.call('SADD', TNODES, node) == 1 or redis.call('EXISTS', tinbox(node)) == 0 then
    redis.call('XADD', tinbox(node), '*', 'm', cmsgpack.pack({'hello'}))
  end
end

local interrupted = 0
if may_reap then
  local flat = redis.call('HGETALL', TWORKERS)
  for i = 1, #flat, 2 do
    if not alive(node_of(flat[i]), now) then
      interrupted = interrupted + release_runs(flat[i], now, true)
    end
  end
  for _, other in ipairs(redis.call('SMEMBERS', TNODES)) do
    if not redis.call('ZSCORE', LEASES, other) then
      redis.call('DEL', tinbox(other))
      redis.call('SREM', TNODES, other)
    end
  end
end

fire_due(now, limit)
pull_all(now, limit)

local untaken, unregistered, pending, owned = {}, {}, {}, {}
local REQUESTS = {pausing = true, suspending = true, canceling = true}
for i = 4, #ARG do
  if redis.call('HEXISTS', TWORKERS, ARG[i]) == 0 then unregistered[#unregistered + 1] = ARG[i] end
  for _, key in ipairs(redis.call('SMEMBERS', wruns(ARG[i]))) do
    local rec = load_task(key)
    if rec and rec.w == ARG[i] and rec.s == 'starting' then
      untaken[#untaken + 1] = key
      untaken[#untaken + 1] = ARG[i]
      untaken[#untaken + 1] = rec.e
    elseif rec and rec.w == ARG[i] and ON_WORKER[rec.s] then
      for _, v in ipairs({key, ARG[i], rec.e}) do owned[#owned + 1] = v end
      if REQUESTS[rec.s] then
        for _, v in ipairs({key, ARG[i], rec.e, rec.s}) do pending[#pending + 1] = v end
      end
    end
  end
end

local head = redis.call('ZRANGE', TDELAYED, 0, 0, 'WITHSCORES')
local due = -1
if head[2] then due = tonumber(head[2]) end
return {due, now, untaken, interrupted, unregistered, pending, owned}
