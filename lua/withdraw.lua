-- withdraw: the dispatcher's wait timed out; take the job back so it cannot start later.
-- ARG: key, node (dispatcher), dispatch request id, this call's request id, ms to keep the
--      memo of the outcome (how long the caller may retry this call).
-- Returns {'started'} (it did start, the reply was missed) | {'withdrawn', state, worker}
--   (state and owner when it was withdrawn: 'queued' with worker '', no worker took it;
--   'assigned', the owner did not report a start; 'starting', the owner claimed it and its
--   start() has not returned) | {'gone'}.
-- Invariants: after 'withdrawn', start() is never called for this dispatch; a start already
-- under way (claimed, or on the owner's fast path) is followed by stop(), and the key is
-- freed only once the owner confirmed it (stopped.lua), so no later job of this key overlaps;
-- a retry of this call (same request id) returns what the first returned and changes nothing.
local key, node, req, call, keep = ARG[1], ARG[2], tonumber(ARG[3]), ARG[4], tonumber(ARG[5])
local memo = recall(node, call)
if memo then return memo end
local rec = load_job(key)
if not rec or rec.d ~= node then return remember(node, call, keep, {'gone'}) end
if rec.r == nil then
  if rec.s == 'running' or rec.s == 'stopping' then return remember(node, call, keep, {'started'}) end
  return remember(node, call, keep, {'gone'})
end
if rec.r ~= req then return remember(node, call, keep, {'gone'}) end
rec.r = nil
local result = {'withdrawn', rec.s, rec.w}
if rec.s == 'queued' then
  finish_stop(key, rec, 'withdrawn')
else
  request_stop(key, rec)
  save_job(key, rec)
end
return remember(node, call, keep, result)
