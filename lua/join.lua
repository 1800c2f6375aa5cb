-- join: register a worker with a fresh lease and announce the new membership.
-- ARG: worker id, ttl ms.
-- Returns {'ok', version, now ms} | {'shutdown'}.
-- Invariant: no worker joins a pool that is shutting down.
local worker, ttl = ARG[1], tonumber(ARG[2])
if redis.call('HEXISTS', META, 'shutdown') == 1 then return {'shutdown'} end
local now = now_ms()
redis.call('HSET', WORKERS, worker, cmsgpack.pack({c = now}))
redis.call('ZADD', LEASES, now + ttl, worker)
return {'ok', bump_version(), now}
