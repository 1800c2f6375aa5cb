-- task_release: a running job gives up what it has on a key: its hold (the key's locked job
-- goes back to scheduled, or is placed), or its wait to hold it (a wait that timed out or
-- was cancelled).
-- ARG: worker, holder key, epoch, key.
-- Returns 'ok' | 'unowned' (the run ended: its end released everything already).
-- Invariant: only the holder's own run (worker, epoch) releases its hold; a retry is a no-op.
local worker, holder, epoch, key = ARG[1], ARG[2], tonumber(ARG[3]), ARG[4]
local rec = load_task(holder)
if not rec or rec.w ~= worker or rec.e ~= epoch or TERMINAL[rec.s] then return 'unowned' end
if rec.wf == key then rec.wf = nil end
release_hold(holder, rec, key, now_ms())
save_task(holder, rec)
return 'ok'
