-- Shared by every script: redpool prepends this file to each script before loading it.
--
-- Calling convention (src/redpool/_scripts.py builds it; src/redpool/_keys.py names the keys):
--   KEYS[1..11] = jobs, pending, workers, leases, meta, events, tickers, ended, backlog,
--                 requests, request_expiry  (one hash tag: the pool)
--   ARGV[1]    = template of a worker's owned-jobs set   ("...:worker:*:jobs")
--   ARGV[2]    = template of a node's inbox stream       ("...:node:*:inbox")
--   ARGV[3]    = template of a job's pending notes list  ("...:notes:*")
--   ARG[i]     = ARGV[i + 3]: the script's own arguments
-- Dynamic keys are built from the templates and carry the same hash tag, so every key a script
-- touches is in the fixed keys' slot (they are not declared in KEYS: see docs/architecture.md §2).
--
-- Job record (msgpack map in JOBS[key]):
--   p payload, c created ms (server), d dispatching node, r dispatch request id (while the
--   dispatcher waits), q dispatch request id (kept), x server ms until which the dispatcher may
--   retry its admit, w owning worker ('' when queued), s state, e epoch (drawn from meta.epoch
--   on every assignment: the fencing token, unique pool-wide), a attempts, sw list of
--   {node, request} waiting on a stop.
-- States: queued -> assigned -> starting -> running -> stopping -> (deleted)

local JOBS, PENDING, WORKERS, LEASES, META, EVENTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local TICKERS, ENDED, BACKLOG = KEYS[7], KEYS[8], KEYS[9]
local REQUESTS, REQUEST_EXPIRY = KEYS[10], KEYS[11]
local OWNED_T, INBOX_T, NOTES_T = ARGV[1], ARGV[2], ARGV[3]
local ARG = {}
for i = 4, #ARGV do ARG[i - 3] = ARGV[i] end

-- Plain substitution of the template's one '*' (ids and job keys may hold any character).
local function fill(template, id)
  local at = string.find(template, '*', 1, true)
  return string.sub(template, 1, at - 1) .. id .. string.sub(template, at + 1)
end
local function owned(worker) return fill(OWNED_T, worker) end
local function inbox(node) return fill(INBOX_T, node) end
local function notes(key) return fill(NOTES_T, key) end
-- A worker id is "<node id>.<n>": its node is the part before the first dot.
local function node_of(worker) return string.match(worker, '^([^.]+)%.') end
local function is_worker(id) return string.find(id, '.', 1, true) ~= nil end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- nil: no such job; false: the stored record is corrupt; otherwise the record table.
local function load_job(key) return load_record(JOBS, key) end
local function save_job(key, rec) save_record(JOBS, key, rec) end

-- Epochs are drawn from one pool-wide counter, so no two assignments of a key ever share an
-- epoch, also across admissions. Returns the first of ``n`` fresh epochs.
local function fresh_epochs(n)
  return redis.call('HINCRBY', META, 'epoch', n) - n + 1
end

-- Request memos: the outcome of a mutating call ``<node>:<request>`` (request ids are unique
-- per node, node ids random per node; a worker's take_notes uses ``<worker id>:<request>``,
-- a namespace of its own), kept while its caller may retry it, so a retry after a
-- lost reply answers the same and changes nothing. Each write forgets a few expired memos:
-- bounded work per call, and the memos never outgrow the calls of one retry window.
local function recall(node, request)
  local raw = redis.call('HGET', REQUESTS, node .. ':' .. request)
  if raw then return cmsgpack.unpack(raw) end
  return nil
end
local function remember(node, request, ttl_ms, result)
  local id, now = node .. ':' .. request, now_ms()
  local old = redis.call('ZRANGEBYSCORE', REQUEST_EXPIRY, '-inf', now, 'LIMIT', 0, 10)
  if #old > 0 then
    redis.call('HDEL', REQUESTS, unpack(old))
    redis.call('ZREM', REQUEST_EXPIRY, unpack(old))
  end
  redis.call('HSET', REQUESTS, id, cmsgpack.pack(result))
  redis.call('ZADD', REQUEST_EXPIRY, now + ttl_ms, id)
  return result
end

-- NOMKSTREAM: a message to a node that is gone (its inbox deleted) is dropped, never leaked;
-- the job records still say what must happen, and reconciliation acts on them.
local function send(node, msg)
  redis.call('XADD', inbox(node), 'NOMKSTREAM', '*', 'm', cmsgpack.pack(msg))
end

-- The pool's life this caller belongs to (``mine``, the incarnation id it remembers) against
-- the one in META: 'same'; 'ended' when ``mine`` was ended by a shutdown or purge (the
-- tombstone says so: the caller must not come back); otherwise 'lost' (Redis lost the pool's
-- state: the caller adopts the current incarnation and rejoins). Also returns META's current
-- incarnation (false when there is none).
local function pool_life(mine)
  local current = redis.call('HGET', META, 'incarnation')
  if current == mine then return 'same', current end
  if redis.call('ZSCORE', ENDED, mine) then return 'ended', current end
  return 'lost', current
end

local function event(msg)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', 1000, '*', 'm', cmsgpack.pack(msg))
end

local function bump_version()
  local v = redis.call('HINCRBY', META, 'version', 1)
  event({'members', v})
  return v
end

local function delete_job(key, rec)
  redis.call('HDEL', JOBS, key)
  redis.call('DEL', notes(key))
  redis.call('ZREM', PENDING, key)
  redis.call('SREM', BACKLOG, key)
  if rec and rec.w ~= '' then redis.call('SREM', owned(rec.w), key) end
end

-- The job is gone for good: tell everyone still waiting on it. While its dispatcher may still
-- retry the admit (its reply lost), the admit's memo says how the job ended, so the retry
-- neither raises JobExistsError nor admits (and starts) the job again.
local function finish_stop(key, rec, why)
  delete_job(key, rec)
  local reply = {'started', ''}
  if rec.r then
    reply = {'failed', why}
    send(rec.d, {'reply', rec.r, 'failed', why})
  end
  if rec.q and rec.x then
    local left = rec.x - now_ms()
    if left > 0 then remember(rec.d, rec.q, left + 1000, reply) end
  end
  for _, waiter in ipairs(rec.sw or {}) do send(waiter[1], {'reply', waiter[2], 'stopped', ''}) end
end

-- The owner must stop the job (it may be starting it): mark it and tell the owner's node.
local function request_stop(key, rec)
  if rec.s ~= 'stopping' then
    rec.s = 'stopping'
    send(node_of(rec.w), {'stop', key, rec.w, rec.e})
  end
end

-- The worker left or died (and fenced itself first): its jobs go back to the queue, due now.
-- Returns how many jobs it had (stopping ones are deleted instead).
local function release_worker(worker)
  local set, released = owned(worker), 0
  for _, key in ipairs(redis.call('SMEMBERS', set)) do
    local rec = load_job(key)
    if rec and rec.w == worker then
      released = released + 1
      if rec.s == 'stopping' then
        finish_stop(key, rec, 'job was stopped before it started')
      else
        rec.w, rec.s = '', 'queued'
        save_job(key, rec)
        redis.call('ZADD', PENDING, 0, key)
      end
    end
  end
  redis.call('DEL', set)
  return released
end

-- Placement: consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam). A
-- worker's load is the size of its owned set (its jobs from assigned to stopping); its limit
-- is min(its capacity, ceil((1 + eps) * jobs / workers)), jobs counting the one being placed.
-- The caller passes the ring's order of candidates for the key (the first distinct workers
-- clockwise from its point, space-separated) and the ring's members (sorted ids); the walk
-- takes the first candidate under its limit, then the rest of the ring in id order. When
-- every worker is at its bound but some are below their capacity (capped workers could not
-- take their share), the first of those in the same order takes the job; nil when every
-- worker is at its capacity (the job waits in the queue).
local LOADS, CAPS = {}, {}
local function load_of(worker)
  local n = LOADS[worker]
  if n == nil then
    n = redis.call('SCARD', owned(worker))
    LOADS[worker] = n
  end
  return n
end
local function capacity_of(worker)  -- false: unbounded
  local cap = CAPS[worker]
  if cap == nil then
    local ok, rec = pcall(cmsgpack.unpack, redis.call('HGET', WORKERS, worker) or '')
    cap = ok and type(rec) == 'table' and tonumber(rec.n) or false
    CAPS[worker] = cap
  end
  return cap
end
local function load_bound(eps, jobs, workers)
  return math.ceil((1 + eps) * jobs / workers - 1e-9)
end
local function split(text)
  local out = {}
  for id in string.gmatch(text, '%S+') do out[#out + 1] = id end
  return out
end
-- The worker for a job whose ring order is ``cands``, or nil. ``mine``: the worker that holds
-- the job now ('' for none); the walk stops there (the job holds a slot on it already), so a
-- job only ever moves forward in its own order.
local function pick_worker(cands, members, bound, mine)
  local spare, seen = nil, {}
  local function fits(w)
    local load, cap = load_of(w), capacity_of(w)
    if cap and load >= cap then return false end
    if load < bound then return true end
    spare = spare or w
    return false
  end
  for w in string.gmatch(cands, '%S+') do
    if w == mine or fits(w) then return w end
    seen[w] = true
  end
  for _, w in ipairs(members) do
    if not seen[w] and (w == mine or fits(w)) then return w end
  end
  return spare
end
-- The job moves from ``from`` ('' none) to ``to`` (another worker picked above, so its load
-- is known): the loads the rest of this call sees. Called before the owned sets change.
local function moved_load(from, to)
  if from == to then return end  -- a restart in place: its slot was counted already
  if from ~= '' and LOADS[from] then LOADS[from] = LOADS[from] - 1 end
  LOADS[to] = load_of(to) + 1
end
