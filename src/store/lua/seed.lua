-- Starting stock for levels that do not exist yet; never overwrites what a feed has set.
-- KEYS: level hashes. ARGV: per row four values: key index, node, on hand, safety stock.
local seeded = 0
for i = 1, #ARGV, 4 do
  local key = KEYS[tonumber(ARGV[i])]
  local node = ARGV[i + 1]
  if redis.call('HSETNX', key, 'oh:' .. node, ARGV[i + 2]) == 1 then
    redis.call('HSET', key, 'ss:' .. node, ARGV[i + 3], 'rs:' .. node, '0', 'sq:' .. node, '0')
    seeded = seeded + 1
  end
end
return seeded
