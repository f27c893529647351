-- Gives back an order's capacity: all of it, or so many units at the nodes named. Idempotent.
-- KEYS: used-by-node hash, by-order hash, void marker of the attempt.
-- ARGV: order id, attempt token ('' for any), void marker TTL in ms (0 for none), then node
-- and units per node.
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[3], '1', 'PX', ARGV[3]) end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return 0 end
local h = cjson.decode(prev)
if ARGV[2] ~= '' and h.t ~= ARGV[2] then return 0 end
local give = nil
if #ARGV > 3 then
  give = {}
  for i = 4, #ARGV, 2 do give[ARGV[i]] = (give[ARGV[i]] or 0) + tonumber(ARGV[i + 1]) end
end
local keep, total = {}, 0
for _, e in ipairs(h.n) do
  local take = e[2]
  if give then
    take = math.min(give[e[1]] or 0, e[2])
    if give[e[1]] then give[e[1]] = give[e[1]] - take end
  end
  if take > 0 then
    local used = num(redis.call('HGET', KEYS[1], e[1]))
    redis.call('HINCRBY', KEYS[1], e[1], -math.min(take, used))
    total = total + take
  end
  if e[2] - take > 0 then keep[#keep + 1] = {e[1], e[2] - take} end
end
if #keep == 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  h.n = keep
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
end
return total
