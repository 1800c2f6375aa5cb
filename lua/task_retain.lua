-- task_retain: purge finished task jobs in a bounded batch: first those whose keep time passed
-- (oldest purge time first), then, while more than max_retained finished jobs are kept, the
-- ones that finished first. Every node that uses tasks calls it a few times per worker TTL,
-- and again at once while it answers 'more'.
-- ARG: limit (jobs looked at per call, at most), max_retained.
-- Returns {jobs purged as their keep time passed, jobs purged beyond max_retained, more (1:
--   the batch was full, call again)}.
-- Invariants: the work of a call is bounded by the limit, never by the number of jobs kept; a
-- job is purged only when it is finished (a key listed in an index of a finished status whose
-- record says otherwise loses only that stale entry); a purged key leaves nothing behind
-- (record, payloads, runs, counters, index entries).
local limit, max_retained = tonumber(ARG[1]), tonumber(ARG[2])
local now = now_ms()

local due = redis.call('ZRANGEBYSCORE', TDONE, '-inf', now, 'LIMIT', 0, limit)
local expired = 0
for _, key in ipairs(due) do
  local rec = load_task(key)
  if rec == false or (rec and TERMINAL[rec.s]) then
    forget(key, rec or nil)
    expired = expired + 1
  else
    redis.call('ZREM', TDONE, key)
  end
end

local retained = 0
for status, _ in pairs(TERMINAL) do retained = retained + redis.call('ZCARD', by_status(status)) end
local n = math.min(retained - max_retained, limit - #due)
local evicted = 0
if n > 0 then
  local oldest = {}  -- the n first finished of each finished status, merged by finish order
  for status, _ in pairs(TERMINAL) do
    local flat = redis.call('ZRANGE', by_status(status), 0, n - 1, 'WITHSCORES')
    for i = 1, #flat, 2 do oldest[#oldest + 1] = {tonumber(flat[i + 1]), flat[i], status} end
  end
  table.sort(oldest, function(a, b) return a[1] < b[1] end)
  for i = 1, n do
    local key, status = oldest[i][2], oldest[i][3]
    local rec = load_task(key)
    redis.call('ZREM', by_status(status), key)
    if not rec or rec.s == status then
      forget(key, rec or nil)
      evicted = evicted + 1
    end
  end
end
local more = 0
if #due == limit or retained - max_retained > n then more = 1 end
return {expired, evicted, more}
