-- Starting stock for levels that do not exist yet; never overwrites what a feed has set.
-- KEYS: level hashes. ARGV: per row four values: key index, node, on hand, safety stock.
local seeded = 0
for i = 1, #ARGV, 4 do
  local key = KEYS[tonumber(ARGV[i])]
  if redis.call('HEXISTS', key, ARGV[i + 1]) == 0 then
    level_put(key, ARGV[i + 1], {oh = tonumber(ARGV[i + 2]), rs = 0, ss = tonumber(ARGV[i + 3]), sq = '0', pd = 0})
    seeded = seeded + 1
  end
end
return seeded
