-- assign: route jobs by the caller's ring (queued jobs, jobs of dead or departed workers,
-- requeued jobs once due, and hand-offs after the old owner ran stop(): rebalancing, fencing,
-- reconciliation).
-- ARG: membership version of the caller's ring, ack grace ms, load epsilon, the ring's members
--      (sorted worker ids, space-separated), mode ('keep': a job whose worker is in the ring
--      restarts there, as after fencing or a lost report; 'move': it goes to the first worker
--      of its order with room, up to its own: rebalancing), then triples (key, expected epoch, the
--      ring's order of candidate workers for the key, space-separated).
-- Returns {'stale', current version} when the ring is out of date, {'shutdown', ''}, or
--   {'ok', moved count, {worker ids that were given jobs}}.
-- Invariants: compare-and-set on the epoch, so of several nodes routing the same job at once
-- exactly one wins; each assignment gets a fresh epoch from the pool-wide counter, which
-- fences the previous owner and never repeats for the key; a queued job is not assigned
-- before it is due (a requeue's backoff runs on the Redis clock); a job goes only to a worker
-- under its load limit (pick_worker), or stays on the worker that holds its slot, else it stays
-- as it is (a queued job waits for a free slot; the heartbeat offers it again).
local version, grace, eps, members = ARG[1], tonumber(ARG[2]), tonumber(ARG[3]), split(ARG[4])
local keep, in_ring = ARG[5] == 'keep', {}
for _, w in ipairs(members) do in_ring[w] = true end
local meta = redis.call('HMGET', META, 'version', 'shutdown')
if meta[2] then return {'shutdown', ''} end
local current = meta[1] or '0'
if current ~= version then return {'stale', current} end
local now = now_ms()
local bound = load_bound(eps, redis.call('HLEN', JOBS), #members)
local moved, full, to, targets = 0, false, {}, {}
for i = 6, #ARG, 3 do
  local key, epoch, cands = ARG[i], tonumber(ARG[i + 1]), ARG[i + 2]
  local rec = load_job(key)
  local due = true
  if rec and rec.s == 'queued' then
    due = tonumber(redis.call('ZSCORE', PENDING, key) or 0) <= now
  end
  if rec and rec.e == epoch and rec.s ~= 'stopping' and due and not (full and rec.w == '') then
    local target = rec.w
    if not (keep and in_ring[target]) then target = pick_worker(cands, members, bound, rec.w) end
    if not target then
      full = full or rec.w == ''  -- no slot anywhere: the other unowned jobs need not look
    else
      moved_load(rec.w, target)
      if rec.w ~= '' and rec.w ~= target then redis.call('SREM', owned(rec.w), key) end
      rec.w, rec.s, rec.e = target, 'assigned', fresh_epochs(1)
      save_job(key, rec)
      redis.call('SREM', BACKLOG, key)
      redis.call('ZADD', PENDING, now + grace, key)
      redis.call('SADD', owned(target), key)
      send(node_of(target), {'start', key, target, rec.e})
      moved = moved + 1
      if not to[target] then
        to[target] = true
        targets[#targets + 1] = target
      end
    end
  end
end
return {'ok', moved, targets}
