-- task_checkpoint: the owner of a run at a checkpoint: stores the run's state (when given:
-- a resumed or rerun run of the generation gets it back) and acknowledges a pause (pausing ->
-- paused); a paused run calls it again while it waits, to learn of a resume whose message
-- was lost.
-- ARG: worker, key, epoch, has state (1/0), state (msgpack), acknowledge a pause (1/0).
-- Returns the job's status after the call, or 'unowned' (not this run any more).
-- Invariant: fenced by (worker, epoch); a paused run keeps its worker, slot and epoch.
local worker, key, epoch = ARG[1], ARG[2], tonumber(ARG[3])
local rec = load_task(key)
if not rec or rec.w ~= worker or rec.e ~= epoch or not ON_WORKER[rec.s] then return 'unowned' end
if ARG[4] == '1' then redis.call('HSET', data(key), 'ck', ARG[5]) end
if ARG[6] == '1' and rec.s == 'pausing' then
  set_status(key, rec, 'paused')
  save_task(key, rec)
end
return rec.s
