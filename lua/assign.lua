-- assign: route jobs to workers chosen by the caller's ring (queued jobs, jobs of dead or
-- departed workers, requeued jobs once due, and rebalancing hand-offs after the old owner ran
-- stop()).
-- ARG: membership version of the caller's ring, ack grace ms, then triples
--      (key, expected epoch, target worker).
-- Returns {'stale', current version} when the ring is out of date, {'shutdown', ''}, or
--   {'ok', moved count}.
-- Invariants: compare-and-set on the epoch, so of several nodes routing the same job at once
-- exactly one wins; each assignment gets a fresh epoch from the pool-wide counter, which
-- fences the previous owner and never repeats for the key; a queued job is not assigned
-- before it is due (a requeue's backoff runs on the Redis clock).
local version, grace = ARG[1], tonumber(ARG[2])
local meta = redis.call('HMGET', META, 'version', 'shutdown')
if meta[2] then return {'shutdown', ''} end
local current = meta[1] or '0'
if current ~= version then return {'stale', current} end
local now = now_ms()
local moved = 0
for i = 3, #ARG, 3 do
  local key, epoch, target = ARG[i], tonumber(ARG[i + 1]), ARG[i + 2]
  local rec = load_job(key)
  local due = true
  if rec and rec.s == 'queued' then
    due = tonumber(redis.call('ZSCORE', PENDING, key) or 0) <= now
  end
  if rec and rec.e == epoch and rec.s ~= 'stopping' and due then
    if rec.w ~= '' and rec.w ~= target then redis.call('SREM', owned(rec.w), key) end
    rec.w, rec.s, rec.e = target, 'assigned', fresh_epochs(1)
    save_job(key, rec)
    redis.call('SREM', BACKLOG, key)
    redis.call('ZADD', PENDING, now + grace, key)
    redis.call('SADD', owned(target), key)
    send(node_of(target), {'start', key, target, rec.e})
    moved = moved + 1
  end
end
return {'ok', moved}
