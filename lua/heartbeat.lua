-- heartbeat: a node renews its own and its workers' leases, reaps expired leases, trims its
-- inbox and redelivers overdue starts. Every node runs it a few times per worker TTL.
-- ARG: node, ttl ms, ack grace ms, inbox trim id ('' for none), route limit, the pool
--      incarnation the node belongs to ('' on its first beat), own worker ids...
-- Returns {now ms, missing own workers, earliest time a lease may be reaped, ms (or -1),
--   version, shutdown (0/1), routable (flat key, epoch pairs), corrupt job keys, reaped worker
--   and node ids, number of jobs the reaped workers had, incarnation, life ('same' |
--   'lost': Redis lost the pool's state, the node now belongs to the returned incarnation |
--   'ended': the node's pool was shut down; nothing was written)}.
-- Invariants: a lease is renewed only while it exists, so a worker reaped as dead learns it
-- (it is listed as missing) instead of coming back to life; a dead worker's jobs are released
-- in the same step that removes it, exactly once; starts are redelivered only to their current,
-- live owner, one that holds a lease (a job moves to another worker only once its owner is
-- dead or has let it go); nobody is reaped on evidence from before a gap in the pool's
-- heartbeats (an outage or a stall that kept everyone from renewing): after a gap every lease
-- gets one more TTL, measured from the first beat that ran after it; a node of an ended
-- incarnation writes nothing, and no node's lease or inbox is recreated while the pool shuts
-- down.
local node, ttl, grace, trim, limit = ARG[1], tonumber(ARG[2]), tonumber(ARG[3]), ARG[4], tonumber(ARG[5])
local mine = ARG[6]
local now = now_ms()

-- Which life of the pool (architecture.md §8): first beats join the current one (creating it
-- for a new pool), a node whose life ended stays out and writes nothing, one whose life Redis
-- lost moves to the current one (created here if this is the first node to notice).
local life, incarnation = pool_life(mine)
if mine == '' then life = 'same' end
if life == 'ended' then return {now, {}, -1, '', 0, {}, {}, {}, 0, mine, life} end
if not incarnation then
  incarnation = string.format('%x-%s', now, node)
  redis.call('HSET', META, 'incarnation', incarnation)
end

-- Amnesty. meta.beat is when the last heartbeat of any node ran. Live nodes beat every ttl/3,
-- so no beat for ttl/2 means Redis was down, stalled or cut off from everyone (a lease can
-- expire only after ttl/3 + a gap of at least 2/3 ttl). Leases that ran out during the gap
-- prove nothing: reaping waits until meta.amnesty, one TTL after the first beat past the gap.
local meta = redis.call('HMGET', META, 'beat', 'amnesty', 'version', 'shutdown')
local last, amnesty = tonumber(meta[1]), tonumber(meta[2]) or 0
if not last or now - last > ttl / 2 then
  amnesty = now + ttl
  redis.call('HSET', META, 'beat', now, 'amnesty', amnesty)
else
  redis.call('HSET', META, 'beat', now)
end
local shutdown = 0
if meta[4] then shutdown = 1 end

-- Renew (XX: only leases that still exist; CH counts them).
local ids, renew = {node}, {now + ttl, node}
for i = 7, #ARG do
  ids[#ids + 1] = ARG[i]
  renew[#renew + 1] = now + ttl
  renew[#renew + 1] = ARG[i]
end
local missing = {}
if redis.call('ZADD', LEASES, 'XX', 'CH', unpack(renew)) < #ids then
  local scores = redis.call('ZMSCORE', LEASES, unpack(ids))
  for i = 2, #ids do
    if not scores[i] then missing[#missing + 1] = ids[i] end
  end
  if not scores[1] and shutdown == 0 then
    -- First beat, or this node was reaped while unreachable: (re)create its lease and inbox.
    redis.call('ZADD', LEASES, now + ttl, node)
    redis.call('XADD', inbox(node), '*', 'm', cmsgpack.pack({'hello'}))
  end
end

-- Reap.
local first = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
local reaped_ids, released = {}, 0
if now >= amnesty and first[2] and tonumber(first[2]) <= now then
  local reaped = 0
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, 100)) do
    redis.call('ZREM', LEASES, id)
    reaped_ids[#reaped_ids + 1] = id
    if is_worker(id) then
      released = released + release_worker(id)
      redis.call('HDEL', WORKERS, id)
      reaped = reaped + 1
    else
      redis.call('DEL', inbox(id))
    end
  end
  if reaped > 0 then meta[3] = bump_version() end
  first = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
end
local reap_at = -1
if first[2] then reap_at = math.max(tonumber(first[2]), amnesty) end

if trim ~= '' then redis.call('XTRIM', inbox(node), 'MINID', trim) end

-- Overdue starts.
local routable, corrupt = {}, {}
local due = redis.call('ZRANGE', PENDING, 0, 0, 'WITHSCORES')
if due[2] and tonumber(due[2]) <= now then
  local has_workers = redis.call('HLEN', WORKERS) > 0
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', PENDING, '-inf', now, 'LIMIT', 0, limit)) do
    local rec = load_job(key)
    if rec == nil then
      redis.call('ZREM', PENDING, key)
    elseif rec == false then
      redis.call('ZREM', PENDING, key)
      corrupt[#corrupt + 1] = key
    elseif rec.s == 'running' or rec.s == 'stopping' then
      redis.call('ZREM', PENDING, key)
    elseif rec.w ~= '' and redis.call('ZSCORE', LEASES, rec.w) then
      if rec.s == 'assigned' then send(node_of(rec.w), {'start', key, rec.w, rec.e}) end
      redis.call('ZADD', PENDING, now + grace, key)
    elseif has_workers then
      routable[#routable + 1] = key
      routable[#routable + 1] = rec.e
    end
  end
end

return {now, missing, reap_at, tostring(meta[3] or '0'), shutdown, routable, corrupt, reaped_ids,
        released, incarnation, life}
