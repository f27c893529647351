-- Holds an order's units of one sku, all nodes or none.
-- KEYS: level hash, holds hash, void marker of this attempt.
-- ARGV: order id, attempt token, use safety stock (1|0), then per line: line id, node, units.
-- The units are held *pending* (counted as pending in the level too) until the attempt is confirmed.
-- Returns {'ok'}, {'void'} (the attempt was aborted), {'conflict'} (another attempt holds it),
-- {'short', node, wanted, available}, or {'busy', node, wanted, available} when the units would
-- be there if pending holds of other attempts were given back.
if redis.call('EXISTS', KEYS[3]) == 1 then return {'void'} end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if prev then
  if cjson.decode(prev).t == ARGV[2] then return {'ok'} end
  return {'conflict'}
end
local want, nodes, entries = {}, {}, {}
for i = 4, #ARGV, 3 do
  local node, units = ARGV[i + 1], tonumber(ARGV[i + 2])
  if not want[node] then
    want[node] = 0
    nodes[#nodes + 1] = node
  end
  want[node] = want[node] + units
  entries[#entries + 1] = {ARGV[i], node, units}
end
table.sort(nodes)
local levels = {}
for _, node in ipairs(nodes) do
  local l = level_get(KEYS[1], node) or level_new()
  local free = l.oh - l.rs
  if ARGV[3] ~= '1' then free = free - l.ss end
  if free < 0 then free = 0 end
  if want[node] > free then
    if want[node] <= free + l.pd then return {'busy', node, want[node], free} end
    return {'short', node, want[node], free}
  end
  levels[node] = l
end
for _, node in ipairs(nodes) do
  local l = levels[node]
  l.rs = l.rs + want[node]
  l.pd = l.pd + want[node]
  level_put(KEYS[1], node, l)
end
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({t = ARGV[2], p = 1, a = entries}))
return {'ok'}
