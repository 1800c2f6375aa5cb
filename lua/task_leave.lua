-- task_leave: a task worker leaves (its node closes or removes it): the runs it still has
-- go back to their queues without charging an attempt or an interrupt, and are placed on
-- the free slots of the other workers.
-- ARG: worker.
-- Returns the number of runs it had.
-- Invariant: the caller stopped those runs first (or they report 'unowned' afterwards).
local now = now_ms()
local released = release_runs(ARG[1], now, false)
pull_all(now, 100)
return released
