-- stop: a caller asks for a job to stop.
-- ARG: key, node (caller), request id, ms to keep the memo of the outcome (how long the
--      caller may retry this call).
-- Returns {'notfound'} | {'stopped'} (already free) | {'pending'} (the owner will reply).
-- Invariants: a queued job (no owner) is removed at once and never starts; any other is
-- stopped by its owner (who may be starting it already), who frees the key (stopped.lua)
-- after stop() returned, or found nothing to stop; a retry of the same request returns what
-- the first call returned (a stop that worked is never reported as 'notfound').
local key, node, req, keep = ARG[1], ARG[2], tonumber(ARG[3]), tonumber(ARG[4])
local memo = recall(node, req)
if memo then return memo end
local rec = load_job(key)
if rec == nil then return remember(node, req, keep, {'notfound'}) end
if rec == false then
  delete_job(key, nil)
  return remember(node, req, keep, {'stopped'})
end
if rec.s == 'queued' then
  finish_stop(key, rec, 'job was stopped before it started')
  return remember(node, req, keep, {'stopped'})
end
rec.sw = rec.sw or {}
rec.sw[#rec.sw + 1] = {node, req}
request_stop(key, rec)
save_job(key, rec)
return remember(node, req, keep, {'pending'})
