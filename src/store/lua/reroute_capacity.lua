-- Moves an order's capacity of its day with a finished reroute: the units that left a node
-- give its capacity back, the new units take theirs (a reroute does not check the new nodes'
-- limits). Idempotent: a mark of the reroute in this slot notes it done.
-- KEYS: used-by-node hash, by-order hash (see capacity_take), the reroute's done mark here.
-- ARGV: order id, the reroute's token, mark TTL in ms, the node the units leave, count of
-- lines leaving, then line and units per line leaving, then node, units and line per new part.
-- Returns 1 when moved now, 0 when done before or the order holds no capacity that day.
-- A counter that is not a whole number is left as it is (HINCRBY would fail half-way).
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
local ok, h = false, nil
if prev then ok, h = pcall(cjson.decode, prev) end
if not ok or type(h) ~= 'table' or type(h.n) ~= 'table' then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
  return 0
end
local function count(node, units)
  local used = redis.call('HGET', KEYS[1], node)
  if used and not string.match(used, '^%d+$') then return end
  local n = units
  if units < 0 then n = -math.min(-units, tonumber(used or '0')) end
  if n ~= 0 then redis.call('HINCRBY', KEYS[1], node, fmt(n)) end
end
local function entry_ok(e)
  return type(e) == 'table' and type(e[1]) == 'string' and type(e[2]) == 'number'
    and e[4] ~= 1
end
local node, lines = ARGV[4], tonumber(ARGV[5])
for i = 6, 5 + 2 * lines, 2 do
  local left = tonumber(ARGV[i + 1])
  for _, e in ipairs(h.n) do
    if entry_ok(e) and e[1] == node and e[3] == ARGV[i] and left > 0 then
      local take = math.min(left, e[2])
      e[2] = e[2] - take
      left = left - take
      count(node, -take)
    end
  end
end
for i = 6 + 2 * lines, #ARGV, 3 do
  local to, units, line = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local joined = false
  for _, e in ipairs(h.n) do
    if entry_ok(e) and e[1] == to and e[3] == line then
      e[2] = e[2] + units
      joined = true
      break
    end
  end
  if not joined then h.n[#h.n + 1] = {to, units, line} end
  count(to, units)
end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
return 1
