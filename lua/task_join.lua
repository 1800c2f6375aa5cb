-- task_join: register a task worker (or update its caps or mark it draining) and fill its
-- slots from the queues.
-- ARG: worker, concurrency, queues (msgpack map queue -> cap, -1: up to concurrency),
--      draining (1: it takes no new runs: close(drain=) lets its runs finish).
-- Returns the number of queued runs handed to it; -1 when its node holds no lease or the pool
-- shuts down.
-- Invariant: a worker is registered only while its node holds a lease.
local worker, now = ARG[1], now_ms()
if not alive(node_of(worker), now) or redis.call('HEXISTS', META, 'shutdown') == 1 then
  return -1
end
local wrec = {c = tonumber(ARG[2]), q = cmsgpack.unpack(ARG[3]), d = tonumber(ARG[4])}
redis.call('HSET', TWORKERS, worker, cmsgpack.pack(wrec))
return pull(worker, wrec, now, 100)
