-- shutdown: the pool begins to shut down (every node stops its jobs and leaves).
-- ARG: the pool incarnation the caller belongs to, worker_shutdown_ttl ms.
-- Returns {'ok', deadline ms, now ms} (a shutdown already under way keeps its own times) or
--   {'changed'} (the caller's incarnation is not the pool's).
-- Invariant: the flag records, in server time, when the shutdown began and the deadline after
-- which anyone may finish it (purge.lua), so an initiator that dies cannot leave the pool name
-- unusable; from then on admit, assign, claim and join refuse.
if pool_life(ARG[1]) ~= 'same' then return {'changed'} end
local now = now_ms()
local flag = redis.call('HMGET', META, 'shutdown', 'deadline')
if flag[1] then return {'ok', tonumber(flag[2]) or 0, now} end
local deadline = now + tonumber(ARG[2])
redis.call('HSET', META, 'shutdown', now, 'deadline', deadline)
event({'shutdown'})
return {'ok', deadline, now}
