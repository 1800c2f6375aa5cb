-- tick: a node waiting on a ticker tries to take the next tick.
-- ARG: ticker name, interval ms (to recreate a lost entry), the pool incarnation the node
--      belongs to.
-- Returns {'stopped'} when the ticker was stopped (its entry is a stop marker, or is not a
--   ticker), {'changed'} when the node's incarnation is not the pool's (its heartbeat settles
--   that: it adopts the new one or closes), else {status, start ms, interval ms, index, now
--   ms}: 'won' (the caller delivers tick ``index``) or 'early' (tick ``index`` is the next
--   one, not due yet).
-- Invariant: tick k is due at start + k * interval (no drift) and is taken by exactly one
-- node; a ticker that fell behind skips to its latest due tick instead of bursting. A missing
-- entry in the caller's incarnation was lost with Redis's data (a stop leaves a marker, a
-- shutdown ends the incarnation): it is created again, its tick 0 due at once.
local name, interval = ARG[1], tonumber(ARG[2])
if pool_life(ARG[3]) ~= 'same' then return {'changed'} end
local now = now_ms()
local raw = redis.call('HGET', TICKERS, name)
local t
if raw then
  local ok, decoded = pcall(cmsgpack.unpack, raw)
  if not ok or type(decoded) ~= 'table' or type(decoded.s) ~= 'number'
      or type(decoded.i) ~= 'number' or type(decoded.k) ~= 'number' then
    return {'stopped'}
  end
  t = decoded
else
  t = {s = now, i = interval, k = -1}  -- its tick 0 is due now: the HSET below recreates it
end
local next_index = t.k + 1
if now < t.s + next_index * t.i then return {'early', t.s, t.i, next_index, now} end
t.k = math.floor((now - t.s) / t.i)
redis.call('HSET', TICKERS, name, cmsgpack.pack(t))
return {'won', t.s, t.i, t.k, now}
