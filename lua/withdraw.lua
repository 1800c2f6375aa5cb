-- withdraw: the dispatcher's wait timed out; take the job back so it cannot start later.
-- ARG: key, node (dispatcher), request id.
-- Returns {'started'} (it did start, the reply was missed) | {'withdrawn'} | {'gone'}.
-- Invariant: after 'withdrawn', start() is never called for this dispatch; a start already
-- under way (claimed, or on the owner's fast path) is followed by stop(), and the key is
-- freed only once the owner confirmed it (stopped.lua), so no later job of this key overlaps.
local key, node, req = ARG[1], ARG[2], tonumber(ARG[3])
local rec = load_job(key)
if not rec or rec.d ~= node then return {'gone'} end
if rec.r == nil then
  if rec.s == 'running' or rec.s == 'stopping' then return {'started'} end
  return {'gone'}
end
if rec.r ~= req then return {'gone'} end
rec.r = nil
if rec.s == 'queued' then
  finish_stop(key, rec, 'withdrawn')
else
  request_stop(key, rec)
  save_job(key, rec)
end
return {'withdrawn'}
