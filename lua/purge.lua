-- purge: delete a bounded part of an ended pool's keys; called again until it answers 'done'.
-- ARG: the incarnation being purged ('' on the first call: whichever is current),
--      overdue only (1: only finish a shutdown whose deadline has passed; 0: purge now),
--      limit (entries of each structure per call), tombstone ttl ms, the template of a
--      schedule's jobs set.
-- Returns {status, incarnation, shutdown deadline ms (0 if none), now ms}; status is
--   'none'    (overdue only) no shutdown under way: nothing done;
--   'pending' (overdue only) a shutdown is under way and its deadline has not passed;
--   'more'    part done: call again with the returned incarnation;
--   'done'    the pool's keys are gone (or a new life of the pool began meanwhile: left alone).
-- Invariant: only the purged incarnation's keys go, found from its records (no keyspace scan);
-- its id is in the tombstone before anything is deleted, so a node of it that comes back
-- closes instead of rejoining; META goes last, so until everything is gone the shutdown flag
-- keeps admit, assign, claim and join refusing and makes every node of it leave.
local expected, overdue_only, limit = ARG[1], ARG[2] == '1', tonumber(ARG[3])
local tomb_ttl, schedule_t = tonumber(ARG[4]), ARG[5]
local meta = redis.call('HMGET', META, 'incarnation', 'shutdown', 'deadline')
local current, deadline, now = meta[1] or '', tonumber(meta[3]) or 0, now_ms()
if expected ~= '' and current ~= expected then return {'done', current, deadline, now} end
if expected == '' and overdue_only then
  if not meta[2] then return {'none', current, deadline, now} end
  if deadline > now then return {'pending', current, deadline, now} end
end

if current ~= '' then
  redis.call('ZADD', ENDED, now, current)
  redis.call('ZREMRANGEBYSCORE', ENDED, '-inf', now - tomb_ttl)
  redis.call('PEXPIRE', ENDED, tomb_ttl)
end
if not meta[2] then
  redis.call('HSET', META, 'shutdown', now, 'deadline', now)
  event({'shutdown'})
end

for _, key in ipairs(redis.call('HRANDFIELD', JOBS, limit)) do
  local rec = load_job(key)
  if rec and type(rec.w) == 'string' and rec.w ~= '' then redis.call('DEL', owned(rec.w)) end
  redis.call('DEL', notes(key))
  redis.call('ZREM', PENDING, key)
  redis.call('HDEL', JOBS, key)
end
for _, worker in ipairs(redis.call('HRANDFIELD', WORKERS, limit)) do
  redis.call('DEL', owned(worker))
  redis.call('HDEL', WORKERS, worker)
end
for _, id in ipairs(redis.call('ZRANGE', LEASES, 0, limit - 1)) do
  if is_worker(id) then
    redis.call('DEL', owned(id), inbox(node_of(id)))
  else
    redis.call('DEL', inbox(id))
  end
  redis.call('ZREM', LEASES, id)
end
for _, name in ipairs(redis.call('HRANDFIELD', TICKERS, limit)) do
  local producer = string.match(name, '^schedule:(.*)$')
  if producer then redis.call('DEL', fill(schedule_t, producer)) end
  redis.call('HDEL', TICKERS, name)
end

local left = redis.call('HLEN', JOBS) + redis.call('HLEN', WORKERS) + redis.call('ZCARD', LEASES)
  + redis.call('HLEN', TICKERS)
if left > 0 then return {'more', current, deadline, now} end
redis.call('DEL', PENDING, BACKLOG, REQUESTS, REQUEST_EXPIRY, EVENTS, META)
return {'done', current, deadline, now}
