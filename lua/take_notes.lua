-- take_notes: the owner of a job takes its pending notifications.
-- ARG: key, worker, epoch, request id (unique per worker), ms to keep the memo of the
--      outcome (how long the worker may retry this call).
-- Returns the payloads in the order they were sent (empty when none, or when the caller no
-- longer owns this assignment: then they stay for the owner).
-- Invariant: each notification is taken once; a retry of the same request (its reply was
-- lost) returns the notes the first call took, so none is lost either.
local key, worker, epoch, req, keep = ARG[1], ARG[2], tonumber(ARG[3]), ARG[4], tonumber(ARG[5])
local memo = recall(worker, req)
if memo then return memo end
local rec = load_job(key)
if not rec or rec.w ~= worker or rec.e ~= epoch then return {} end
local list = notes(key)
local out = redis.call('LRANGE', list, 0, -1)
if #out == 0 then return out end
redis.call('DEL', list)
return remember(worker, req, keep, out)
