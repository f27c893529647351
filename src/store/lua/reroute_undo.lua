-- Gives back the new units a reroute holds at one sku (it was forgotten, not decided), and
-- marks it void here so that a hold of it arriving late is refused. Idempotent.
-- KEYS: level hash, holds hash, the reroute's void mark at the sku.
-- ARGV: order id, the reroute's token, void mark TTL in ms.
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
local prev = redis.call('HGET', KEYS[2], ARGV[1])
local h = prev and hold_decode(prev)
if not h or type(h.n) ~= 'table' or h.n.t ~= ARGV[2] then return 0 end
if type(h.n.a) == 'table' then
  for _, e in ipairs(h.n.a) do
    local l = hold_part_ok(e) and level_read(KEYS[1], e[2])
    if l then
      l.rs = l.rs - math.min(e[3], l.rs)
      l.pd = l.pd - math.min(e[3], l.pd)
      level_put(KEYS[1], e[2], l)
    end
  end
end
h.n = nil
if #h.a == 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
end
return 1
