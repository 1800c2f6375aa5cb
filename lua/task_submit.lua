-- task_submit: admit a batch of task jobs, all or none, each placed in the same step: on the best worker with a
-- free slot (the start goes to its node's tasks inbox), else in its queue's ready set, or in
-- the delayed set when it is due later. While the key has an active generation, if_active
-- decides: 'reject', 'return', 'queue' (the job waits in the key's FIFO and runs after the
-- ones before it ended) or 'replace' (the active one is canceled and this one runs next).
-- ARG: per job 11 fields: key, task name, queue, params (bytes), options (msgpack map:
--      to, ma, mi, rs, kp, kf, pri, tn, lb), delay ms (-1: now), idempotency key ('' none), params fingerprint,
--      idempotency ttl ms, if_active ('reject' | 'return' | 'queue' | 'replace'), auto (1:
--      the idempotency key is the caller's retry guard, not the user's: not in the record).
-- Returns {'shutdown'} (the pool shuts down: nothing admitted), {'refused', i, outcome} (job
--   i's outcome is a refusal: nothing of the batch was admitted), or per job one of
--   {'ok', generation, status} | {'active', generation, status} (if_active=return) |
--   {'idem', key, generation, status} (the idempotency key's earlier job).
--   Refusals: {'exists', generation, status} (if_active=reject) | {'conflict', key} (same
--   idempotency key, other params) | {'full', 'queue' | 'key', waiting} (the queue's
--   max_queued, or the key's FIFO, bounded by the same number, would be exceeded).
-- Invariants: all or none of a batch is admitted (a first pass decides every job before
-- anything is written); the jobs a batch adds waiting count against max_queued as if none
-- could start at once (the bound holds whatever placement finds); at most one active
-- (non-terminal) generation per key, the others wait in its FIFO; an idempotency key is
-- checked and recorded in the same step as the admission, so concurrent submits with one key
-- admit one job; a job is handed to a worker only while that worker has a free slot for its
-- queue (checked here, in Redis) and its node holds a lease.
local now = now_ms()
if redis.call('HEXISTS', META, 'shutdown') == 1 then return {'shutdown'} end

local jobs = {}
for at = 1, #ARG, 11 do
  jobs[#jobs + 1] = {key = ARG[at], task = ARG[at + 1], queue = ARG[at + 2],
    params = ARG[at + 3], opts = cmsgpack.unpack(ARG[at + 4]), delay = tonumber(ARG[at + 5]),
    ik = ARG[at + 6], fp = ARG[at + 7], ik_ttl = tonumber(ARG[at + 8]),
    if_active = ARG[at + 9], auto = ARG[at + 10] == '1'}
end

-- The queue's max_queued (-1: none; a key's FIFO is bounded by it too, 100000 without).
local caps = {}
local function max_queued(queue)
  if caps[queue] == nil then
    local conf = decode(redis.call('HGET', TQUEUES, queue) or '')
    caps[queue] = conf and conf.mq and conf.mq >= 0 and conf.mq or -1
  end
  return caps[queue]
end

-- What admitting ``j`` does, given what the batch's earlier jobs did (``batch``: keys they
-- made active, idempotency keys they recorded; empty once those are written): a reply of its
-- own ('conflict', 'idem' replay, 'active', 'exists'), or 'fifo' / 'fresh' with the key's
-- record.
local function classify(j, batch)
  if j.ik ~= '' then
    local prior = batch.idem[j.ik] or idem_get(j.ik, now)
    if prior then
      if prior.fp ~= j.fp then return 'conflict', {'conflict', prior.key} end
      if batch.idem[j.ik] then return 'idem', nil end
      local rec = load_task(prior.key)
      if rec and rec.g == prior.g then return 'idem', {'idem', prior.key, prior.g, rec.s} end
      if rec and rec.g < prior.g then return 'idem', {'idem', prior.key, prior.g, 'queued'} end
      -- that generation was purged or replaced: this submission admits anew
    end
  end
  local old = load_task(j.key)
  if batch.active[j.key] or (old and not TERMINAL[old.s]) then
    if j.if_active == 'return' then return 'active', old and {'active', old.g, old.s} end
    if j.if_active == 'reject' then return 'exists', {'exists', old and old.g or 0, old and old.s or ''} end
    return 'fifo', old
  end
  return 'fresh', old
end

-- First pass: every job's fate, and the caps, before anything is written. A job no earlier
-- job of the batch shares its key or idempotency key with keeps its classification for the
-- second pass (no other job's writes touch what it read); the others are classified again.
local batch, waiting, queued_behind = {active = {}, idem = {}}, {}, {}
local decided, touched, seen = {}, {}, {}
for i, j in ipairs(jobs) do
  local kind, reply = classify(j, batch)
  if not touched[j.key] and not (j.ik ~= '' and seen[j.ik]) and kind ~= 'idem' then
    decided[i] = {kind, reply}
  end
  touched[j.key] = true
  if j.ik ~= '' then seen[j.ik] = true end
  if kind == 'conflict' or kind == 'exists' then return {'refused', i, reply} end
  local cap = max_queued(j.queue)
  if kind == 'fifo' then
    queued_behind[j.key] = (queued_behind[j.key] or redis.call('LLEN', next_of(j.key))) + 1
    local limit = cap >= 0 and cap or 100000
    if queued_behind[j.key] > limit then
      return {'refused', i, {'full', 'key', queued_behind[j.key] - 1}}
    end
  elseif kind == 'fresh' then
    batch.active[j.key] = true
    if j.delay < 0 and cap >= 0 then
      waiting[j.queue] = (waiting[j.queue] or redis.call('ZCARD', ready(j.queue))) + 1
      if waiting[j.queue] > cap then
        return {'refused', i, {'full', 'queue', waiting[j.queue] - 1}}
      end
    end
  end
  if j.ik ~= '' and (kind == 'fifo' or kind == 'fresh') then batch.idem[j.ik] = {key = j.key, fp = j.fp} end
end

local NONE = {active = {}, idem = {}}

local function submit(i, j)
  local kind, found
  if decided[i] then kind, found = decided[i][1], decided[i][2] else kind, found = classify(j, NONE) end
  if kind ~= 'fifo' and kind ~= 'fresh' then return found end
  local key, queue, params = j.key, j.queue, j.params
  local entry = {t = j.task, q = queue, o = j.opts, d = j.delay,
    ik = j.ik ~= '' and not j.auto and j.ik or nil, c = now}
  local function remember_idem(g)
    if j.ik ~= '' then idem_set(j.ik, {key = key, g = g, fp = j.fp}, j.ik_ttl, now) end
  end

  if kind == 'fifo' then
    local old = found
    entry.g = redis.call('HINCRBY', TMETA, 'gen', 1)
    redis.call('HSET', data(key), 'p' .. entry.g, params)
    if j.if_active == 'queue' then
      redis.call('RPUSH', next_of(key), cmsgpack.pack(entry))
    else  -- replace: this one is next, and the active one ends now or once its code stopped
      redis.call('LPUSH', next_of(key), cmsgpack.pack(entry))
      if not ON_WORKER[old.s] then  -- scheduled, queued, locked, suspended: no run to stop
        redis.call('ZREM', TDELAYED, key)
        redis.call('ZREM', ready(old.q), key)
        finish(key, old, 'canceled', now)
      elseif old.s == 'starting' then
        cancel_unclaimed(key, old, now)
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

  local old = found
  if old then unlist(key, old) end
  entry.g = redis.call('HINCRBY', TMETA, 'gen', 1)
  supersede(key, old, entry.g, params)
  local rec = admit(key, entry, now)
  remember_idem(rec.g)
  return {'ok', rec.g, rec.s}
end

local out = {}
for i, j in ipairs(jobs) do out[#out + 1] = submit(i, j) end
return out
