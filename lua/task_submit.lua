-- task_submit: admit one task job, and place it in the same step: on the best worker with a
-- free slot (the start goes to its node's tasks inbox), else in its queue's ready set, or in
-- the delayed set when it is due later.
-- ARG: key, task name, queue, params (bytes), options (msgpack map: to, ma, mi, rs, kp, kf,
--      pri, tn, lb), delay ms (-1: now), idempotency key ('' none), params fingerprint,
--      idempotency ttl ms, if_active ('reject' | 'return').
-- Returns {'shutdown'} (the pool shuts down: nothing admitted) | {'ok', generation, status} | {'exists', generation, status} (if_active=reject) |
--   {'active', generation, status} (if_active=return) | {'idem', key, generation, status}
--   (the idempotency key's earlier job) | {'conflict', key} (same idempotency key, other
--   params) | {'full', queued} (the queue's max_queued is reached).
-- Invariants: at most one active (non-terminal) generation per key; an idempotency key is
-- checked and recorded in the same step as the admission, so concurrent submits with one
-- key admit one job; a job is handed to a worker only while that worker has a free slot for
-- its queue (checked here, in Redis) and its node holds a lease.
local key, task, queue, params, opts = ARG[1], ARG[2], ARG[3], ARG[4], cmsgpack.unpack(ARG[5])
local delay, ik, fp, ik_ttl, if_active = tonumber(ARG[6]), ARG[7], ARG[8], tonumber(ARG[9]), ARG[10]
local now = now_ms()
if redis.call('HEXISTS', META, 'shutdown') == 1 then return {'shutdown'} end

if ik ~= '' then
  local raw = redis.call('GET', idem(ik))
  local prior = raw and decode(raw)
  if prior then
    if prior.fp ~= fp then return {'conflict', prior.key} end
    local rec = load_task(prior.key)
    if rec and rec.g == prior.g then return {'idem', prior.key, prior.g, rec.s} end
    -- that generation was purged or replaced: this submission admits anew
  end
end

local old = load_task(key)
if old and not TERMINAL[old.s] then
  if if_active == 'return' then return {'active', old.g, old.s} end
  return {'exists', old.g, old.s}
end

local conf = decode(redis.call('HGET', TQUEUES, queue) or '')
if conf and conf.mq and conf.mq >= 0 and delay < 0 and redis.call('ZCARD', ready(queue)) >= conf.mq then
  return {'full', redis.call('ZCARD', ready(queue))}
end

if old then
  redis.call('ZREM', by_status(old.s), key)
  redis.call('ZREM', TDONE, key)
end
redis.call('DEL', data(key))
redis.call('HSET', data(key), 'p', params)
local rec = {
  s = 'new', t = task, q = queue, g = redis.call('HINCRBY', TMETA, 'gen', 1), e = 0, w = '',
  a = 0, ma = opts.ma or 1, ni = 0, mi = opts.mi or 3, to = opts.to or 0, rs = opts.rs,
  pri = opts.pri or 0, c = now, kp = opts.kp, kf = opts.kf, tn = opts.tn, lb = opts.lb,
  ik = ik ~= '' and ik or nil,
}
if delay >= 0 then
  rec.due = now + delay
  set_status(key, rec, 'scheduled')
  save_task(key, rec)
  redis.call('ZADD', TDELAYED, rec.due, key)
else
  place(key, rec, now)
end
if ik ~= '' then
  redis.call('SET', idem(ik), cmsgpack.pack({key = key, g = rec.g, fp = fp}), 'PX', ik_ttl)
end
return {'ok', rec.g, rec.s}
