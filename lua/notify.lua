-- notify: queue a notification for the job and poke the worker that owns it now.
-- ARG: key, payload.
-- Returns {'ok'} | {'notfound'}.
-- Invariant: notifications wait in the job's notes list, in the order sent, until the owner
-- of the current assignment takes them (take_notes.lua); a job that moves takes its pending
-- notes along, so each is delivered once, to whoever runs the key.
local key, payload = ARG[1], ARG[2]
local rec = load_job(key)
if not rec or rec.s == 'stopping' then return {'notfound'} end
redis.call('RPUSH', notes(key), payload)
if rec.w ~= '' and (rec.s == 'starting' or rec.s == 'running') then
  send(node_of(rec.w), {'notify', key, rec.w, rec.e})
end
return {'ok'}
