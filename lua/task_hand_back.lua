-- task_hand_back: a worker gives back runs the records say it runs but it does not have
-- (the upkeep's reconciliation: a claim whose reply was lost, a report that never went
-- through, a run its runner lost): each goes back to its queue (interrupted,
-- reason 'orphaned'), or ends as canceled when a cancel was asked, and the free slots
-- take the queued runs at once.
-- ARG: worker, then (key, epoch) pairs.
-- Returns the number of runs handed back.
-- Invariants: only a run still given to (worker, epoch) in a status on the worker other than
-- starting (whose claim may still be on its way) moves, so a retry or a stale pair is a
-- no-op; a hand-back charges neither an attempt nor an interrupt (the code may never have
-- run); work is bounded by the pairs given and the placement limit.
local worker, now, handed = ARG[1], now_ms(), 0
for i = 2, #ARG, 2 do
  local key, epoch = ARG[i], tonumber(ARG[i + 1])
  local rec = load_task(key)
  if rec and rec.w == worker and rec.e == epoch and ON_WORKER[rec.s] and rec.s ~= 'starting' then
    interrupt(key, rec, now, false, 'orphaned')
    handed = handed + 1
  end
end
pull_all(now, 100)
return handed
