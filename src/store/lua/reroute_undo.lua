-- Gives back the new units a reroute holds at one sku (it was forgotten, not decided), and
-- marks it void here so that a hold of it arriving late is refused. Idempotent.
-- KEYS: level hash, holds hash, the reroute's void mark at the sku.
-- ARGV: order id, the reroute's token, void mark TTL in ms.
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
local prev = redis.call('HGET', KEYS[2], ARGV[1])
local h = prev and hold_decode(prev)
if not h or type(h.n) ~= 'table' or h.n.t ~= ARGV[2] then return 0 end
reroute_give_back(KEYS[1], h)
if #h.a == 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
end
return 1
