-- ticker: create a distributed ticker, or keep the existing one.
-- ARG: name, interval ms, replace (1: a new ticker of this name replaces the old one, as the
--      newer of two tickers wins; 0: keep an existing ticker of the same interval).
-- Returns nothing.
-- Invariant: one ticker per name; its first tick (index 0) is due at once.
local name, interval, replace = ARG[1], tonumber(ARG[2]), ARG[3] == '1'
local raw = redis.call('HGET', TICKERS, name)
if raw and not replace then
  local ok, t = pcall(cmsgpack.unpack, raw)
  if ok and type(t) == 'table' and t.i == interval then return end
end
redis.call('HSET', TICKERS, name, cmsgpack.pack({s = now_ms(), i = interval, k = -1}))
