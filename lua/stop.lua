-- stop: a caller asks for a job to stop.
-- ARG: key, node (caller), request id.
-- Returns {'notfound'} | {'stopped'} (already free) | {'pending'} (the owner will reply).
-- Invariant: a queued job (no owner) is removed at once and never starts; any other is
-- stopped by its owner (who may be starting it already), who frees the key (stopped.lua)
-- after stop() returned, or found nothing to stop.
local key, node, req = ARG[1], ARG[2], tonumber(ARG[3])
local rec = load_job(key)
if rec == nil then return {'notfound'} end
if rec == false then
  delete_job(key, nil)
  return {'stopped'}
end
if rec.s == 'queued' then
  finish_stop(key, rec, 'job was stopped before it started')
  return {'stopped'}
end
rec.sw = rec.sw or {}
rec.sw[#rec.sw + 1] = {node, req}
request_stop(key, rec)
save_job(key, rec)
return {'pending'}
