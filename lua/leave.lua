-- leave: a worker leaves after its node stopped its jobs; they go back to the queue at once.
-- ARG: worker id.
-- Returns the new membership version.
-- Invariant: the caller ran stop() for every job of this worker first, so releasing them
-- cannot make a key run twice.
local worker = ARG[1]
release_worker(worker)
redis.call('HDEL', WORKERS, worker)
redis.call('ZREM', LEASES, worker)
return bump_version()
