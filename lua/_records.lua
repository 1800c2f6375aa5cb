-- Shared by the core's and the tasks layer's preludes: redpool puts it first in every script.
-- Records are msgpack maps in a hash, packed by Lua cmsgpack; each has a string state `s` and a
-- number epoch `e`, so anything else under a record's field is corrupt (written by hand, or by
-- something other than redpool) and is reported, never acted on.

-- nil: no such record; false: the stored record is corrupt; otherwise the record table.
local function load_record(hash, key)
  local raw = redis.call('HGET', hash, key)
  if not raw then return nil end
  local ok, rec = pcall(cmsgpack.unpack, raw)
  if not ok or type(rec) ~= 'table' or type(rec.s) ~= 'string' or type(rec.e) ~= 'number' then
    return false
  end
  return rec
end

local function save_record(hash, key, rec) redis.call('HSET', hash, key, cmsgpack.pack(rec)) end
