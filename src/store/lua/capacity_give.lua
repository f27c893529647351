-- Gives back an order's capacity: all of it, or down to the units it keeps at the nodes named
-- (nodes not named keep theirs). Idempotent: the units kept are a target, not an amount to
-- give, so whichever call finishes a release gives its capacity back, and only once.
-- KEYS: used-by-node hash, by-order hash, void marker of the attempt.
-- ARGV: order id, attempt token ('' for any), void marker TTL in ms (0 for none), then node
-- and units to keep per node.
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[3], '1', 'PX', ARGV[3]) end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return 0 end
local ok, h = pcall(cjson.decode, prev)
if not ok or type(h) ~= 'table' or type(h.n) ~= 'table' then return 0 end
if ARGV[2] ~= '' and h.t ~= ARGV[2] then return 0 end
local keep_at = nil
if #ARGV > 3 then
  keep_at = {}
  for i = 4, #ARGV, 2 do keep_at[ARGV[i]] = (keep_at[ARGV[i]] or 0) + tonumber(ARGV[i + 1]) end
end
local keep, total = {}, 0
for _, e in ipairs(h.n) do
  local kept = 0
  if keep_at then kept = math.min(keep_at[e[1]] or e[2], e[2]) end
  local give = e[2] - kept
  if give > 0 then
    local used = num(redis.call('HGET', KEYS[1], e[1]))
    redis.call('HINCRBY', KEYS[1], e[1], fmt(-math.min(give, used)))
    total = total + give
  end
  if kept > 0 then keep[#keep + 1] = {e[1], kept} end
end
if #keep == 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  h.n = keep
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
end
return total
