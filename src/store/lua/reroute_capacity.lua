-- Moves an order's capacity of its day with a finished reroute: the units that left a node
-- give its capacity back, the new units take theirs (a reroute does not check the new nodes'
-- limits). Idempotent: a mark in this slot notes the reroute done.
-- KEYS: used-by-node hash, by-order hash (see capacity_take), the order's reroute mark here.
-- ARGV: order id, the reroute's token, mark TTL in ms, the node the units leave, count of
-- lines leaving, then line and units per line leaving, then node, units and line per new part.
-- Returns 1 when moved now, 0 when done before or the order holds no capacity that day.
if redis.call('GET', KEYS[3]) == ARGV[2] then return 0 end
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return 0 end
local ok, h = pcall(cjson.decode, prev)
if not ok or type(h) ~= 'table' or type(h.n) ~= 'table' then return 0 end
local function counted_down(node, units)
  local used = redis.call('HGET', KEYS[1], node)
  if used and string.match(used, '^%d+$') then
    local n = math.min(units, tonumber(used))
    if n > 0 then redis.call('HINCRBY', KEYS[1], node, fmt(-n)) end
  end
end
local node, count = ARGV[4], tonumber(ARGV[5])
for i = 6, 5 + 2 * count, 2 do
  local left = tonumber(ARGV[i + 1])
  for _, e in ipairs(h.n) do
    if type(e) == 'table' and e[1] == node and e[3] == ARGV[i] and e[4] ~= 1
        and type(e[2]) == 'number' and left > 0 then
      local take = math.min(left, e[2])
      e[2] = e[2] - take
      left = left - take
      counted_down(node, take)
    end
  end
end
for i = 6 + 2 * count, #ARGV, 3 do
  local units = tonumber(ARGV[i + 1])
  h.n[#h.n + 1] = {ARGV[i], units, ARGV[i + 2]}
  if units > 0 then redis.call('HINCRBY', KEYS[1], ARGV[i], fmt(units)) end
end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
return 1
