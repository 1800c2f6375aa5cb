-- tick: a node waiting on a ticker tries to take the next tick.
-- ARG: ticker name.
-- Returns {'stopped'} when the ticker is gone, else {status, start ms, interval ms, index,
--   now ms}: 'won' (the caller delivers tick ``index``) or 'early' (tick ``index`` is the next
--   one, not due yet).
-- Invariant: tick k is due at start + k * interval (no drift) and is taken by exactly one
-- node; a ticker that fell behind skips to its latest due tick instead of bursting.
local name = ARG[1]
local raw = redis.call('HGET', TICKERS, name)
if not raw then return {'stopped'} end
local ok, t = pcall(cmsgpack.unpack, raw)
if not ok or type(t) ~= 'table' or type(t.s) ~= 'number' or type(t.i) ~= 'number'
    or type(t.k) ~= 'number' then
  return {'stopped'}
end
local now = now_ms()
local next_index = t.k + 1
if now < t.s + next_index * t.i then return {'early', t.s, t.i, next_index, now} end
t.k = math.floor((now - t.s) / t.i)
redis.call('HSET', TICKERS, name, cmsgpack.pack(t))
return {'won', t.s, t.i, t.k, now}
