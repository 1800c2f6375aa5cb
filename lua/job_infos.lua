-- job_infos: what job records say, without their payloads, for job_info() and pool_jobs().
-- ARG: 'keys', job key...                 the named jobs, in order;
--    | 'worker', worker id, cursor, count  one SSCAN page of the worker's owned set.
-- Returns {next cursor ('0' once the scan is done; '' for 'keys'), info...}. Each info is
--   msgpack {k key, s state, w worker ('' when queued), e epoch, a attempts, c created ms,
--   t started ms (only once the current assignment is running), d dispatching node,
--   n payload bytes, h host and i pid of the worker (when its record has them)}. For 'keys',
--   a missing job is false and a corrupt record is 'corrupt'; a 'worker' page skips both, and
--   the jobs whose record no longer names that worker.
-- Invariant: read-only; a call reads at most the records it was given or one SCAN page.
local hosts = {}

-- The host and pid of a worker from its record (false when it has no readable one).
local function host_of(worker)
  if hosts[worker] == nil then
    hosts[worker] = false
    local raw = redis.call('HGET', WORKERS, worker)
    if raw then
      local ok, w = pcall(cmsgpack.unpack, raw)
      if ok and type(w) == 'table' then hosts[worker] = w end
    end
  end
  return hosts[worker]
end

local function info(key, rec)
  local out = {k = key, s = rec.s, w = rec.w, e = rec.e, a = rec.a, c = rec.c, d = rec.d,
               n = string.len(rec.p or '')}
  -- started.lua stamps {epoch, ms}: a stamp of an earlier assignment does not count.
  if type(rec.t) == 'table' and rec.t[1] == rec.e then out.t = rec.t[2] end
  local w = rec.w ~= '' and host_of(rec.w)
  if w then out.h, out.i = w.h, w.p end
  return cmsgpack.pack(out)
end

local out = {''}
if ARG[1] == 'keys' then
  for i = 2, #ARG do
    local rec = load_job(ARG[i])
    if rec == nil then out[#out + 1] = false
    elseif rec == false then out[#out + 1] = 'corrupt'
    else out[#out + 1] = info(ARG[i], rec) end
  end
else
  local worker = ARG[2]
  local page = redis.call('SSCAN', owned(worker), ARG[3], 'COUNT', ARG[4])
  out[1] = page[1]
  for _, key in ipairs(page[2]) do
    local rec = load_job(key)
    if rec and rec.w == worker then out[#out + 1] = info(key, rec) end
  end
end
return out
