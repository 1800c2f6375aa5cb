-- task_submit: admit a batch of task jobs, each placed in the same step: on the best worker with a
-- free slot (the start goes to its node's tasks inbox), else in its queue's ready set, or in
-- the delayed set when it is due later. While the key has an active generation, if_active
-- decides: 'reject', 'return', 'queue' (the job waits in the key's FIFO and runs after the
-- ones before it ended) or 'replace' (the active one is canceled and this one runs next).
-- ARG: per job 11 fields: key, task name, queue, params (bytes), options (msgpack map:
--      to, ma, mi, rs, kp, kf, pri, tn, lb), delay ms (-1: now), idempotency key ('' none), params fingerprint,
--      idempotency ttl ms, if_active ('reject' | 'return' | 'queue' | 'replace'), auto (1:
--      the idempotency key is the caller's retry guard, not the user's: not in the record).
--      A key's FIFO holds up to the queue's max_queued (default 100000) submissions.
-- Returns {'shutdown'} (the pool shuts down: nothing admitted), or per job one of
--   {'ok', generation, status} |
--   {'exists', generation, status} (if_active=reject) | {'active', generation, status}
--   (if_active=return) | {'idem', key, generation, status} (the idempotency key's earlier
--   job) | {'conflict', key} (same idempotency key, other params) | {'full', queued} (the
--   queue's max_queued, or the key's queue, is full).
-- Invariants: at most one active (non-terminal) generation per key, the others wait in its
-- FIFO; an idempotency key is checked and recorded in the same step as the admission, so
-- concurrent submits with one key admit one job; a job is handed to a worker only while that
-- worker has a free slot for its queue (checked here, in Redis) and its node holds a lease.
local now = now_ms()
if redis.call('HEXISTS', META, 'shutdown') == 1 then return {'shutdown'} end

local function submit(at)
  local key, task, queue, params = ARG[at], ARG[at + 1], ARG[at + 2], ARG[at + 3]
  local opts, delay = cmsgpack.unpack(ARG[at + 4]), tonumber(ARG[at + 5])
  local ik, fp, ik_ttl = ARG[at + 6], ARG[at + 7], tonumber(ARG[at + 8])
  local if_active, auto = ARG[at + 9], ARG[at + 10] == '1'

  if ik ~= '' then
    local prior = idem_get(ik, now)
    if prior then
      if prior.fp ~= fp then return {'conflict', prior.key} end
      local rec = load_task(prior.key)
      if rec and rec.g == prior.g then return {'idem', prior.key, prior.g, rec.s} end
      if rec and rec.g < prior.g then return {'idem', prior.key, prior.g, 'queued'} end
      -- that generation was purged or replaced: this submission admits anew
    end
  end

  local function remember_idem(g)
    if ik ~= '' then
      idem_set(ik, {key = key, g = g, fp = fp}, ik_ttl, now)
    end
  end
  local entry = {t = task, q = queue, o = opts, d = delay, ik = ik ~= '' and not auto and ik or nil,
    c = now}

  local conf = decode(redis.call('HGET', TQUEUES, queue) or '')
  local max_pending = 100000
  if conf and conf.mq and conf.mq >= 0 then max_pending = conf.mq end

  local old = load_task(key)
  if old and not TERMINAL[old.s] then
    if if_active == 'return' then return {'active', old.g, old.s} end
    if if_active == 'reject' then return {'exists', old.g, old.s} end
    local waiting = redis.call('LLEN', next_of(key))
    if waiting >= max_pending then return {'full', waiting} end
    entry.g = redis.call('HINCRBY', TMETA, 'gen', 1)
    redis.call('HSET', data(key), 'p' .. entry.g, params)
    if if_active == 'queue' then
      redis.call('RPUSH', next_of(key), cmsgpack.pack(entry))
    else  -- replace: this one is next, and the active one ends now or once its code stopped
      redis.call('LPUSH', next_of(key), cmsgpack.pack(entry))
      if old.s == 'scheduled' or old.s == 'queued' then
        redis.call('ZREM', TDELAYED, key)
        redis.call('ZREM', ready(old.q), key)
        finish(key, old, 'canceled', now)
      elseif old.s ~= 'canceling' then
        old.cf = 1
        set_status(key, old, 'canceling')
        save_task(key, old)
        send(node_of(old.w), {'cancel', key, old.w, old.e})
      end
    end
    remember_idem(entry.g)
    local rec = load_task(key)
    if rec and rec.g == entry.g then return {'ok', entry.g, rec.s} end
    return {'ok', entry.g, 'queued'}
  end

  local queued = redis.call('ZCARD', ready(queue))
  if conf and conf.mq and conf.mq >= 0 and delay < 0 and queued >= conf.mq then
    return {'full', queued}
  end

  if old then
    redis.call('ZREM', by_status(old.s), key)
    redis.call('ZREM', TDONE, key)
  end
  redis.call('DEL', data(key))
  redis.call('HSET', data(key), 'p', params)
  entry.g = redis.call('HINCRBY', TMETA, 'gen', 1)
  local rec = admit(key, entry, now)
  remember_idem(rec.g)
  return {'ok', rec.g, rec.s}
end

local out = {}
for at = 1, #ARG, 11 do out[#out + 1] = submit(at) end
return out
