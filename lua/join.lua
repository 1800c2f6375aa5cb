-- join: register a worker with a fresh lease and announce the new membership.
-- ARG: worker id, ttl ms, host name, process id (shown by pool_workers and job_info).
-- Returns {'ok', version, now ms} | {'shutdown'}.
-- Invariant: no worker joins a pool that is shutting down.
local worker, ttl, host, pid = ARG[1], tonumber(ARG[2]), ARG[3], tonumber(ARG[4])
if redis.call('HEXISTS', META, 'shutdown') == 1 then return {'shutdown'} end
local now = now_ms()
redis.call('HSET', WORKERS, worker, cmsgpack.pack({c = now, h = host, p = pid}))
redis.call('ZADD', LEASES, now + ttl, worker)
return {'ok', bump_version(), now}
