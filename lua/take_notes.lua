-- take_notes: the owner of a job takes its pending notifications.
-- ARG: key, worker, epoch.
-- Returns the payloads in the order they were sent (empty when none, or when the caller no
-- longer owns this assignment: then they stay for the owner).
-- Invariant: each notification is taken once.
local key, worker, epoch = ARG[1], ARG[2], tonumber(ARG[3])
local rec = load_job(key)
if not rec or rec.w ~= worker or rec.e ~= epoch then return {} end
local list = notes(key)
local out = redis.call('LRANGE', list, 0, -1)
redis.call('DEL', list)
return out
