-- join: register a worker with a fresh lease and announce the new membership.
-- ARG: worker id, ttl ms, host name, process id (shown by pool_workers and job_info), the pool
--      incarnation the worker's node belongs to, capacity (most jobs at once; '' unbounded).
-- Returns {'ok', version, now ms} | {'shutdown'} | {'changed'} (the node's incarnation is not
--   the pool's: its next heartbeat tells it whether the pool's state was lost or it ended).
-- Invariant: no worker joins a pool that is shutting down, nor a life of the pool its node
-- does not belong to (a node cut off through a shutdown never rejoins the next pool).
local worker, ttl, host, pid, cap = ARG[1], tonumber(ARG[2]), ARG[3], tonumber(ARG[4]), tonumber(ARG[6])
if redis.call('HEXISTS', META, 'shutdown') == 1 then return {'shutdown'} end
if pool_life(ARG[5]) ~= 'same' then return {'changed'} end
local now = now_ms()
redis.call('HSET', WORKERS, worker, cmsgpack.pack({c = now, h = host, p = pid, n = cap}))
redis.call('ZADD', LEASES, now + ttl, worker)
return {'ok', bump_version(), now}
