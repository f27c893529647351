-- Confirms an attempt's hold of one sku once its record is held: the units stop being pending.
-- KEYS: level hash, holds hash. ARGV: order id, token.
-- A level that cannot be read is left for a snapshot to repair (it recounts pending then).
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return 0 end
local h = hold_decode(prev)
if not h or h.t ~= ARGV[2] or h.p ~= 1 then return 0 end
for _, e in ipairs(h.a) do
  local l = hold_part_ok(e) and level_read(KEYS[1], e[2])
  if l then
    l.pd = l.pd - math.min(e[3], l.pd)
    level_put(KEYS[1], e[2], l)
  end
end
h.p = nil
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
return 1
