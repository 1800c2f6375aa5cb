-- ticker: join the distributed ticker of this name, creating it if needed.
-- ARG: name, interval ms.
-- Returns nothing.
-- Invariant: one ticker per name. A ticker of the same interval is joined as it is; one of
-- another interval is replaced (the newer wins), its first tick (index 0) due at once.
local name, interval = ARG[1], tonumber(ARG[2])
local raw = redis.call('HGET', TICKERS, name)
if raw then
  local ok, t = pcall(cmsgpack.unpack, raw)
  if ok and type(t) == 'table' and t.i == interval then return end
end
redis.call('HSET', TICKERS, name, cmsgpack.pack({s = now_ms(), i = interval, k = -1}))
