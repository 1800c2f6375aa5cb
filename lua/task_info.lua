-- task_info: the record of a generation of a job and its error, for info() and status().
-- ARG: key, generation (0: the current).
-- Returns {'missing'} | {'ok', record (msgpack), error ('' none), progress (flat completed,
--   total, details, updated ms; empty when none)}; a generation still in the
--   key's FIFO gets a record made from its entry (status queued); a superseded one its final
--   record as kept (tdata:<key> o<g>), else one made from its last run (status: that run's
--   outcome), or 'missing' if it never ran.
-- Invariant: read only.
local key, wanted = ARG[1], tonumber(ARG[2])
local raw = redis.call('HGET', TJOBS, key)
if not raw then return {'missing'} end
local rec = load_task(key)
if wanted == 0 or not rec or rec.g == wanted then
  local fields = redis.call('HMGET', data(key), 'err', 'pc', 'pt', 'pd', 'pu')
  local progress = {}
  if fields[2] then progress = {fields[2], fields[3], fields[4], fields[5]} end
  return {'ok', raw, fields[1] or '', progress}
end
if rec.g ~= wanted then  -- in the FIFO (a replace puts a newer one at its head), or over
  for _, eraw in ipairs(redis.call('LRANGE', next_of(key), 0, -1)) do
    local e = decode(eraw)
    if e and e.g == wanted then
      return {'ok', cmsgpack.pack({s = 'queued', t = e.t, q = e.q, g = e.g, e = 0, w = '', a = 0,
        ni = 0, c = e.c, tn = e.o.tn, lb = e.o.lb, ik = e.ik}), '', {}}
    end
  end
  -- not in the FIFO: it ran before an older generation (a replace goes to the FIFO's head)
end
local kept = decode(redis.call('HGET', data(key), 'o' .. wanted) or '')
if kept and type(kept.r) == 'table' then
  local err = ''
  if kept.r.s ~= 'succeeded' then err = kept.v end
  return {'ok', cmsgpack.pack(kept.r), err, {}}
end
for _, item in ipairs(redis.call('LRANGE', runs(key), 0, HISTORY - 1)) do
  local run = decode(item)
  if run and run.g == wanted and run.o ~= 'interrupted' then
    local err = ''
    if type(run.err) == 'table' then err = cmsgpack.pack(run.err) end
    return {'ok', cmsgpack.pack({s = run.o, t = rec.t, q = rec.q, g = run.g, e = run.e, w = '',
      a = run.a, ni = 0, c = run.s, sa = run.s, fin = run.f}), err, {}}
  end
end
return {'missing'}
