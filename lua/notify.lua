-- notify: queue a notification for the job and poke the worker that owns it now.
-- ARG: key, payload, node (caller), request id, ms to keep the memo of the outcome (how long
--      the caller may retry this call), most notes that may wait for the job.
-- Returns {'ok'} | {'notfound'} | {'full', notes waiting}.
-- Invariants: notifications wait in the job's notes list, in the order sent, until the owner
-- of the current assignment takes them (take_notes.lua); a job that moves takes its pending
-- notes along, so each is delivered once, to whoever runs the key; a retry of the same
-- request queues nothing again; at most the given number of notes wait per job.
local key, payload, node, req = ARG[1], ARG[2], ARG[3], ARG[4]
local keep, max_notes = tonumber(ARG[5]), tonumber(ARG[6])
local memo = recall(node, req)
if memo then return memo end
local rec = load_job(key)
if not rec or rec.s == 'stopping' then return remember(node, req, keep, {'notfound'}) end
local list = notes(key)
local waiting = redis.call('LLEN', list)
if waiting >= max_notes then return {'full', waiting} end
redis.call('RPUSH', list, payload)
if rec.w ~= '' and (rec.s == 'starting' or rec.s == 'running') then
  send(node_of(rec.w), {'notify', key, rec.w, rec.e})
end
return remember(node, req, keep, {'ok'})
