-- heartbeat: a node renews its own and its workers' leases, reaps expired leases, trims its
-- inbox and redelivers overdue starts. Every node runs it a few times per worker TTL.
-- ARG: node, ttl ms, ack grace ms, inbox trim id ('' for none), route limit, reap (1 or 0:
--      0 when the caller's previous beat failed: after an outage every node first renews, so
--      nobody is reaped for an outage that kept everyone from renewing), meta (1: also read
--      the membership version and the shutdown flag, which the event stream announces too),
--      own worker ids...
-- Returns {now ms, missing own workers, earliest lease expiry ms (or -1), version ('' when
--   not read), shutdown (0/1), routable (flat key, epoch pairs), corrupt job keys, reaped
--   worker and node ids, number of jobs the reaped workers had}.
-- Invariants: a lease is renewed only while it exists, so a worker reaped as dead learns it
-- (it is listed as missing) instead of coming back to life; a dead worker's jobs are released
-- in the same step that removes it, exactly once; starts are redelivered only to their current,
-- live owner, one that holds a lease (a job moves to another worker only once its owner is
-- dead or has let it go).
local node, ttl, grace, trim, limit = ARG[1], tonumber(ARG[2]), tonumber(ARG[3]), ARG[4], tonumber(ARG[5])
local may_reap, read_meta = ARG[6] == '1', ARG[7] == '1'
local now = now_ms()

-- Renew (XX: only leases that still exist; CH counts them).
local ids, renew = {node}, {now + ttl, node}
for i = 8, #ARG do
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
  if not scores[1] then
    -- First beat, or this node was reaped while unreachable: (re)create its lease and inbox.
    redis.call('ZADD', LEASES, now + ttl, node)
    redis.call('XADD', inbox(node), '*', 'm', cmsgpack.pack({'hello'}))
  end
end

-- Reap.
local first = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
local reaped_ids, released = {}, 0
if may_reap and first[2] and tonumber(first[2]) <= now then
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
  if reaped > 0 then bump_version() end
  first = redis.call('ZRANGE', LEASES, 0, 0, 'WITHSCORES')
end

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

local version, shutdown = '', 0
if read_meta then
  local meta = redis.call('HMGET', META, 'version', 'shutdown')
  version = meta[1] or '0'
  if meta[2] then shutdown = 1 end
end
return {now, missing, tonumber(first[2] or -1), version, shutdown, routable, corrupt, reaped_ids,
        released}
