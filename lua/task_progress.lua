-- task_progress: the owner records a run's progress (latest wins).
-- ARG: worker, key, epoch, completed, total (-1: unknown), details.
-- Returns 'ok', 'invalid' (completed > total) or 'unowned' (not this run any more).
-- Invariant: fenced by (worker, epoch); a finished run's progress is never written.
local worker, key, epoch = ARG[1], ARG[2], tonumber(ARG[3])
local completed, total = tonumber(ARG[4]), tonumber(ARG[5])
local rec = load_task(key)
if not rec or rec.w ~= worker or rec.e ~= epoch or TERMINAL[rec.s] then return 'unowned' end
if total >= 0 and completed > total then return 'invalid' end
redis.call('HSET', data(key), 'pc', ARG[4], 'pt', ARG[5], 'pd', ARG[6], 'pu', now_ms())
return 'ok'
