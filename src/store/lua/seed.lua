-- Starting stock for levels that do not exist yet; never overwrites what a feed has set.
-- KEYS: level hashes. ARGV: per row four values: key index, node, on hand, safety stock.
-- Rows with a figure out of bounds are skipped.
local seeded = 0
for i = 1, #ARGV, 4 do
  local key = KEYS[tonumber(ARGV[i])]
  local oh, ss = units(ARGV[i + 2]), units(ARGV[i + 3])
  if oh and ss and redis.call('HEXISTS', key, ARGV[i + 1]) == 0 then
    level_put(key, ARGV[i + 1], {oh = oh, rs = 0, ss = ss, sq = '0', pd = 0})
    seeded = seeded + 1
  end
end
return seeded
