-- task_fire: place the delayed jobs that are due (delays, retry waits, schedules' next
-- occurrences), run by a node's upkeep when the earliest due time it knows of comes: only the
-- delayed set, so timers that fire often (many schedules) cost no reaping and no scans; the
-- rest of the upkeep (task_maintain) runs once per heartbeat interval and fires too.
-- ARG: limit (due jobs per call).
-- Returns {next due ms (-1: none), now ms, fired}.
-- Invariant: each due job is placed by one caller (the ZREM and the placement are one step).
local limit = tonumber(ARG[1])
local now = now_ms()
local fired = fire_due(now, limit)
local head = redis.call('ZRANGE', TDELAYED, 0, 0, 'WITHSCORES')
local due = -1
if head[2] then due = tonumber(head[2]) end
return {due, now, fired}
