-- Shared by every task script (task_*.lua): redpool prepends this file to each of them.
--
-- Calling convention (src/redpool/tasks/_scripts.py builds it; src/redpool/tasks/_keys.py
-- names the keys; LEASES and META are the pool core's):
--   KEYS[1..13] = tjobs, tworkers, tdelayed, tmeta, tdone, leases, meta, tqueues, tnodes,
--                 tidem, tidem_expiry, tschedules, tholds (one hash tag: the pool)
--   ARGV[1..10] = templates of tdata:<key>, truns:<key>, tinbox:<node>, tready:<queue>,
--                 twruns:<worker>, twq:<worker>|<queue>, tstatus:<status>,
--                 tqactive:<queue>, tstats:<key>, tnext:<key>
--   ARG[i]      = ARGV[i + 10]: the script's own arguments
--
-- Task record (msgpack map in TJOBS[key]): s status, t task name, q queue, g generation,
--   e epoch (drawn from TMETA.epoch on every placement: the fencing token), w worker ('' when
--   none), a attempts started, ma max attempts (0: unlimited), ni interrupts, mi max
--   interrupts, to timeout ms (0: none), sl stall timeout ms (0: none; the owner enforces
--   it), rs retry wait spec (a map Lua passes on), pri priority, c created ms, due ms,
--   x expires ms (not started by then: canceled), sa last start ms, fin finished ms,
--   kp / kf keep ms (succeeded / other terminal), tn tenant, lb labels, ik idempotency key,
--   cf cancel requested (1), rw result waiters [{node, request}], cw control waiters
--   [{node, request}] (told of the next status change: task_control), sp suspendable (1: the
--   claiming worker's task says so), rz resumed (1: the generation was suspended and
--   resumed), rr resume requested while suspending (1); holds (lua/_tasks_holds.lua): hk keys
--   held, wf key waited for, hw nodes waiting for this run, ps status before it was locked.
-- Statuses: scheduled | queued (<-> locked: its key is held) -> starting -> running
--   (-> canceling) -> succeeded | failed | timed_out | canceled | skipped; running ->
--   scheduled (retry) | queued (interrupted); running -> pausing -> paused -> running;
--   running | pausing | paused -> suspending -> suspended -> queued (task_control, README
--   "Pause, resume, suspend").
-- A worker id is "<node id>.t<n>": it lives as long as its node's lease in LEASES.

local TJOBS, TWORKERS, TDELAYED, TMETA, TDONE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local LEASES, META, TQUEUES, TNODES = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local TIDEM, TIDEM_EXPIRY, TSCHEDULES = KEYS[10], KEYS[11], KEYS[12]
local THOLDS = KEYS[13]
local DATA_T, RUNS_T, INBOX_T, READY_T = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local WRUNS_T, WQ_T, STATUS_T, ACTIVE_T = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local STATS_T, NEXT_T = ARGV[9], ARGV[10]
local ARG = {}
for i = 11, #ARGV do ARG[i - 10] = ARGV[i] end

local TERMINAL = {succeeded = true, failed = true, timed_out = true, canceled = true, skipped = true,
  ended = true}
-- Statuses whose run is on a worker (rec.w names it).
local ON_WORKER = {starting = true, running = true, canceling = true, pausing = true, paused = true,
  suspending = true}
local HISTORY = 20 -- runs kept per key in truns:<key>, a LIST: a stream's first entry alone
-- costs ~4.8 KB (its node is allocated whole), and its '~' trimming keeps ~100 entries

local function fill(template, id)
  local at = string.find(template, '*', 1, true)
  return string.sub(template, 1, at - 1) .. id .. string.sub(template, at + 1)
end
local function data(key) return fill(DATA_T, key) end
local function runs(key) return fill(RUNS_T, key) end
local function tinbox(node) return fill(INBOX_T, node) end
local function ready(queue) return fill(READY_T, queue) end
local function wruns(worker) return fill(WRUNS_T, worker) end
local function wq(worker, queue) return fill(WQ_T, worker .. '|' .. queue) end
local function by_status(status) return fill(STATUS_T, status) end
local function active(queue) return fill(ACTIVE_T, queue) end
local function stats(key) return fill(STATS_T, key) end
local function next_of(key) return fill(NEXT_T, key) end
local function node_of(worker) return string.match(worker, '^([^.]+)%.') end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function decode(raw)
  local ok, v = pcall(cmsgpack.unpack, raw)
  if ok and type(v) == 'table' then return v end
  return nil
end

-- Idempotency entries: TIDEM[k] = msgpack {key, g, fp}, valid until TIDEM_EXPIRY[k] (ms).
-- Each write forgets up to 10 expired ones (bounded work per call; a purge deletes both).
local function idem_get(k, now)
  local expiry = redis.call('ZSCORE', TIDEM_EXPIRY, k)
  if not expiry or tonumber(expiry) <= now then return nil end
  return decode(redis.call('HGET', TIDEM, k) or '')
end
local function idem_forget(ks)
  if #ks > 0 then
    redis.call('HDEL', TIDEM, unpack(ks))
    redis.call('ZREM', TIDEM_EXPIRY, unpack(ks))
  end
end
local function idem_set(k, value, ttl, now)
  idem_forget(redis.call('ZRANGEBYSCORE', TIDEM_EXPIRY, '-inf', now, 'LIMIT', 0, 10))
  redis.call('HSET', TIDEM, k, cmsgpack.pack(value))
  redis.call('ZADD', TIDEM_EXPIRY, now + ttl, k)
end

-- nil: no such job; false: corrupt; otherwise the record table.
local function load_task(key) return load_record(TJOBS, key) end
local function save_task(key, rec) save_record(TJOBS, key, rec) end

-- NOMKSTREAM: a message to a node that is gone is dropped; the records say what must happen.
local function send(node, msg)
  redis.call('XADD', tinbox(node), 'NOMKSTREAM', '*', 'm', cmsgpack.pack(msg))
end

-- The status indexes (tstatus:<status>) list jobs without a SCAN, each by a score unique in
-- the pool, so a listing's cursor is a score and stays valid while jobs come and go: an
-- active job's generation (admission order), a finished one's finish sequence (TMETA.fin).
-- Every change tells the control waiters (a pause waiting for its acknowledgement, say).
local function set_status(key, rec, status)
  if rec.s ~= status then
    redis.call('ZREM', by_status(rec.s), key)
    local score = rec.g
    if TERMINAL[status] then score = redis.call('HINCRBY', TMETA, 'fin', 1) end
    redis.call('ZADD', by_status(status), score, key)
    rec.s = status
    for _, waiter in ipairs(rec.cw or {}) do
      send(waiter[1], {'done', waiter[2], key, status, rec.g, false})
    end
    rec.cw = nil
  end
end

-- A finished generation leaves the pool's history: a new one of its key was admitted, or the
-- key is gone.
local function unlist(key, rec)
  redis.call('ZREM', by_status(rec.s), key)
  redis.call('ZREM', TDONE, key)
end

local function alive(node, now)
  local score = redis.call('ZSCORE', LEASES, node)
  return score and tonumber(score) > now
end

-- Free capacity of a worker for a queue: 0 when none. A cap < 0 means "up to concurrency".
local function room(id, wrec, queue)
  local cap = wrec.q[queue]
  if cap == nil then return 0 end
  local free = wrec.c - redis.call('SCARD', wruns(id))
  if cap >= 0 then free = math.min(free, cap - redis.call('SCARD', wq(id, queue))) end
  return free
end

-- Pool-wide cap of a queue (configure_queue max_running), checked at every placement.
local function queue_full(queue)
  local raw = redis.call('HGET', TQUEUES, queue)
  if not raw then return false end
  local conf = decode(raw)
  if not conf or not conf.mr or conf.mr < 0 then return false end
  return redis.call('SCARD', active(queue)) >= conf.mr
end

local finish -- below: place and pull end the jobs that expired with it
local recur -- lua/_task_recurring.lua: a schedule's next occurrence instead of the end
local lock_if_held, release_holds -- lua/_tasks_holds.lua: a held key's job is not placed

-- A job not started by its expires time is canceled instead (its error says so).
local function expired(key, rec, now)
  if not rec.x or rec.sa or now < rec.x then return false end  -- once started, it runs
  redis.call('HSET', data(key), 'err', cmsgpack.pack({type = 'Expired',
    message = 'not started before its expires time'}))
  finish(key, rec, 'canceled', now)
  return true
end

local function assign(key, rec, id)
  rec.w, rec.e = id, redis.call('HINCRBY', TMETA, 'epoch', 1)
  set_status(key, rec, 'starting')
  save_task(key, rec)
  redis.call('SADD', wruns(id), key)
  redis.call('SADD', wq(id, rec.q), key)
  redis.call('SADD', active(rec.q), key)
  send(node_of(id), {'start', key, id, rec.e})
end

-- Placement: rendezvous hashing with bounded load. The key's preferred worker is the live
-- one serving its queue with the highest sha1(key|worker) that has a free slot, so a key
-- sticks to one worker while it has room, and goes to the next in its order when not.
local function pick_worker(key, queue, now)
  if queue_full(queue) then return nil end
  local flat = redis.call('HGETALL', TWORKERS)
  local best, best_score = nil, nil
  for i = 1, #flat, 2 do
    local id, wrec = flat[i], decode(flat[i + 1])
    if wrec and wrec.q and wrec.d ~= 1 and alive(node_of(id), now) and room(id, wrec, queue) > 0 then
      local score = redis.sha1hex(key .. '|' .. id)
      if best_score == nil or score > best_score then best, best_score = id, score end
    end
  end
  return best
end

local function ready_score(rec, now) return (9 - (rec.pri or 0)) * 17592186044416 + now end

-- Run a queued job now if a slot is free, else leave it in its queue's ready set.
local function place(key, rec, now)
  redis.call('ZREM', TDELAYED, key)
  if expired(key, rec, now) or lock_if_held(key, rec, 'queued') then return false end
  local id = pick_worker(key, rec.q, now)
  if id then
    redis.call('ZREM', ready(rec.q), key)
    assign(key, rec, id)
    return true
  end
  rec.w = ''
  set_status(key, rec, 'queued')
  save_task(key, rec)
  redis.call('ZADD', ready(rec.q), 'NX', ready_score(rec, now), key)
  return false
end

-- Fill a worker's free slots from the ready sets of its queues (FIFO per priority band).
local function pull(id, wrec, now, limit)
  local placed = 0
  if wrec.d == 1 then return 0 end
  for queue, _ in pairs(wrec.q) do
    while placed < limit and room(id, wrec, queue) > 0 and not queue_full(queue) do
      local head = redis.call('ZRANGE', ready(queue), 0, 0)[1]
      if not head then break end
      redis.call('ZREM', ready(queue), head)
      local rec = load_task(head)
      if rec and rec.s == 'queued' and not expired(head, rec, now)
          and not lock_if_held(head, rec, 'queued') then
        assign(head, rec, id)
        placed = placed + 1
      end
    end
  end
  return placed
end

-- A worker's freed slots take the heads of its ready queues at once (handoff).
local function refill(worker, now, limit)
  local wrec = decode(redis.call('HGET', TWORKERS, worker) or '')
  if wrec and wrec.q then return pull(worker, wrec, now, limit) end
  return 0
end

-- The run of ``rec`` leaves its worker's slot.
local function free_slot(key, rec)
  if rec.w ~= '' then
    redis.call('SREM', wruns(rec.w), key)
    redis.call('SREM', wq(rec.w, rec.q), key)
  end
  redis.call('SREM', active(rec.q), key)
  release_holds(key, rec)
end

-- Every finished run: one history entry (capped) and the key's counters (kept across
-- generations until the key is purged: metrics()).
-- ``reason``: why an interrupted run was (stalled, lost, fenced, shutdown), else nil.
local function record_run(key, rec, outcome, now, err, reason)
  local started = rec.sa or now
  redis.call('LPUSH', runs(key), cmsgpack.pack({
    g = rec.g, a = rec.a, w = rec.w, e = rec.e, o = outcome, s = started, f = now,
    err = err or false, rn = reason}))
  redis.call('LTRIM', runs(key), 0, HISTORY - 1)
  local took = now - started
  redis.call('HINCRBY', stats(key), 'runs', 1)
  redis.call('HINCRBY', stats(key), outcome, 1)
  redis.call('HINCRBY', stats(key), 'rt', took)
  redis.call('HSET', stats(key), 'rl', took, 'last', now)
  if took > tonumber(redis.call('HGET', stats(key), 'rmax') or '0') then
    redis.call('HSET', stats(key), 'rmax', took)
  end
  if err and err ~= '' then redis.call('HSET', stats(key), 'err', cmsgpack.pack(err)) end
end

-- The key is gone for good (purged or deleted): its record, payloads, history and counters.
local function forget(key, rec)
  if rec then unlist(key, rec) else redis.call('ZREM', TDONE, key) end
  redis.call('HDEL', TJOBS, key)
  redis.call('ZREM', TSCHEDULES, key)
  redis.call('DEL', data(key), runs(key), stats(key), next_of(key))
end

-- A generation of ``key`` (or none when ``entry`` is nil) becomes its record: scheduled,
-- placed on a worker, or queued. ``entry``: {g, t, q, o options, d delay ms (-1: now), ik,
-- c created ms, rw waiters}; the params are already in tdata:<key> 'p'.
local function admit(key, entry, now)
  local opts = entry.o
  local rec = {
    s = 'new', t = entry.t, q = entry.q, g = entry.g, e = 0, w = '', a = 0, ma = opts.ma or 1,
    ni = 0, mi = opts.mi or 3, to = opts.to or 0, sl = opts.sl or 0, rs = opts.rs, pri = opts.pri or 0,
    c = entry.c, kp = opts.kp, kf = opts.kf, tn = opts.tn, lb = opts.lb, ik = entry.ik,
    rw = entry.rw,
  }
  if opts.x then rec.x = entry.c + opts.x end
  if entry.d >= 0 then
    rec.due = now + entry.d
    if not lock_if_held(key, rec, 'scheduled') then
      set_status(key, rec, 'scheduled')
      save_task(key, rec)
      redis.call('ZADD', TDELAYED, rec.due, key)
    end
  else
    place(key, rec, now)
  end
  return rec
end

-- The key's generation ``old`` gives way to generation ``g`` with ``params``: tdata:<key>
-- keeps the params of the generations still in the key's FIFO and, as o<g> = {r final
-- record, v result or error}, the outcomes of its last HISTORY finished generations, so a
-- handle pinned to a replaced generation still gets its result and info, however late.
local function supersede(key, old, g, params)
  local d = data(key)
  if old and TERMINAL[old.s] then
    local value = redis.call('HGET', d, old.s == 'succeeded' and 'res' or 'err') or ''
    redis.call('HSET', d, 'o' .. old.g, cmsgpack.pack({r = old, v = value}))
  end
  local drop, kept = {}, {}
  for _, field in ipairs(redis.call('HKEYS', d)) do
    local done = tonumber(string.match(field, '^o(%d+)$'))
    if done then
      kept[#kept + 1] = done
    elseif not string.match(field, '^p%d+$') or field == 'p' .. g then
      drop[#drop + 1] = field
    end
  end
  table.sort(kept)
  for i = 1, #kept - HISTORY do drop[#drop + 1] = 'o' .. kept[i] end
  for i = 1, #drop, 500 do redis.call('HDEL', d, unpack(drop, i, math.min(i + 499, #drop))) end
  redis.call('HSET', d, 'p', params)
end

-- The key's finished generation gives way to the head of its per-key queue, if any.
local function promote(key, now)
  local raw = redis.call('LPOP', next_of(key))
  if not raw then return end
  local entry = decode(raw)
  if not entry then return end
  local old = load_task(key)
  if old then unlist(key, old) end
  supersede(key, old, entry.g, redis.call('HGET', data(key), 'p' .. entry.g) or '')
  admit(key, entry, now)
end

-- The generation ends: status, purge time, waiters told (with the result or error when
-- small, so a waiter need not read it after the next generation replaced it), and the next
-- generation of its per-key queue admitted.
function finish(key, rec, status, now)
  if rec.rc and status ~= 'ended' and (status ~= 'canceled' or (rec.oc == 1 and rec.cf ~= 1)) then
    if recur(key, rec, now) then return end
    status = 'ended'  -- a schedule ends only by cancel, its window or max_runs
  end
  free_slot(key, rec)
  rec.w, rec.fin, rec.cf = '', now, nil
  set_status(key, rec, status)
  local keep = rec.kp or 86400000
  if status ~= 'succeeded' and status ~= 'ended' then keep = rec.kf or 604800000 end
  redis.call('ZADD', TDONE, now + keep, key)
  redis.call('HSET', data(key), 'st', status)
  local field = 'err'
  if status == 'succeeded' then field = 'res' end
  local value = redis.call('HGET', data(key), field) or ''
  if #value > 16384 then value = false end
  for _, waiter in ipairs(rec.rw or {}) do
    send(waiter[1], {'done', waiter[2], key, status, rec.g, value})
  end
  rec.rw = nil
  save_task(key, rec)
  promote(key, now)
end

-- A run placed on a worker but not claimed yet ('starting': its code has not begun, the claim
-- is the start) is canceled at once; its claim finds it over, and the worker's slot takes
-- the next queued job. Flagged 'canceling' instead, no claim would ever take it (the claim
-- takes only 'starting' runs) and the job stayed canceling for good.
local function cancel_unclaimed(key, rec, now)
  local worker = rec.w
  finish(key, rec, 'canceled', now)
  refill(worker, now, 1)
end

-- A suspended run gives its slot back; with a resume asked meanwhile it is placed again at
-- once. ``uncharged``: the run is not an attempt (it stopped for the suspend).
local function suspended(key, rec, now, uncharged)
  free_slot(key, rec)
  rec.w = ''
  if uncharged then rec.a = math.max(0, rec.a - 1) end
  if rec.rr == 1 then
    rec.rr, rec.rz = nil, 1
    place(key, rec, now)
    return
  end
  set_status(key, rec, 'suspended')
  save_task(key, rec)
end

-- A run ended without an outcome of its own (``reason``: its worker died 'lost', fenced
-- 'fenced', left 'shutdown', or its owner found it 'stalled'): the job goes back to its
-- queue without charging an attempt, unless it exhausted max_interrupts; one that was being
-- suspended is suspended (its last checkpoint state is kept).
local function interrupt(key, rec, now, counted, reason)
  record_run(key, rec, 'interrupted', now, nil, reason)
  if rec.s == 'canceling' or rec.cf == 1 then
    finish(key, rec, 'canceled', now)
    return
  end
  if rec.s == 'suspending' then
    suspended(key, rec, now, true)
    return
  end
  rec.a = math.max(0, rec.a - 1)
  if counted then rec.ni = (rec.ni or 0) + 1 end
  if rec.ni > (rec.mi or 3) then
    redis.call('HSET', data(key), 'err', cmsgpack.pack({type = 'Interrupted',
      message = 'the run was interrupted ' .. rec.ni .. ' times (max_interrupts ' .. (rec.mi or 3)
        .. '; the last one: ' .. reason .. ')'}))
    finish(key, rec, 'failed', now)
    return
  end
  free_slot(key, rec)
  rec.w = ''
  set_status(key, rec, 'queued')
  save_task(key, rec)
  redis.call('ZADD', ready(rec.q), 'NX', ready_score(rec, 0), key)
end

-- Every run of a worker that is gone is interrupted; returns how many it had.
local function release_runs(id, now, counted)
  local keys = redis.call('SMEMBERS', wruns(id))
  for _, key in ipairs(keys) do
    local rec = load_task(key)
    if rec and rec.w == id and not TERMINAL[rec.s] then
      interrupt(key, rec, now, counted, counted and 'lost' or 'shutdown')
    end
  end
  local wrec = decode(redis.call('HGET', TWORKERS, id) or '')
  if wrec and wrec.q then
    for queue, _ in pairs(wrec.q) do redis.call('DEL', wq(id, queue)) end
  end
  redis.call('DEL', wruns(id))
  redis.call('HDEL', TWORKERS, id)
  return #keys
end

-- Place the released and queued jobs on the free slots of every live worker.
local function pull_all(now, limit)
  local flat, placed = redis.call('HGETALL', TWORKERS), 0
  for i = 1, #flat, 2 do
    local wrec = decode(flat[i + 1])
    if wrec and wrec.q and alive(node_of(flat[i]), now) then
      placed = placed + pull(flat[i], wrec, now, limit - placed)
    end
  end
  return placed
end
