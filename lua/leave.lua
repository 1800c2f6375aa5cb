-- leave: workers leave after their node stopped their jobs; the jobs go back to the queue at
-- once. A closing node passes all its workers, so no job is routed to a sibling that is
-- leaving too.
-- ARG: worker ids...
-- Returns the new membership version.
-- Invariant: the caller ran stop() for every job of these workers first, so releasing them
-- cannot make a key run twice.
for _, worker in ipairs(ARG) do
  release_worker(worker)
  redis.call('HDEL', WORKERS, worker)
  redis.call('ZREM', LEASES, worker)
end
return bump_version()
