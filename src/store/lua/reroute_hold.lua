-- Holds the new units of a reroute at one sku, all nodes or none, beside the order's hold
-- (its `n`), pending until the reroute is finished (reroute_swap) or undone (reroute_undo).
-- KEYS: level hash, holds hash, the order's reroute mark at the sku (see reroute_swap). ARGV: order id, the reroute's token, what it may take (as
-- hold.lua), the record's token, then per line: line id, node, units.
-- Returns {'ok'} (now or before), {'short'|'busy', node, wanted, available} or
-- {'corrupt', node, stored text}.
local prev = redis.call('HGET', KEYS[2], ARGV[1])
local h = prev and hold_decode(prev)
if (h and h.n and h.n.t == ARGV[2]) or redis.call('GET', KEYS[3]) == ARGV[2] then
  return {'ok'}
end
local want, nodes, entries = sku_lines(ARGV, 5, #ARGV)
local levels, refusal = sku_check(KEYS[1], want, nodes, ARGV[3])
if refusal then return refusal end
for _, node in ipairs(nodes) do
  local l = levels[node]
  l.rs = l.rs + want[node]
  l.pd = l.pd + want[node]
  level_put(KEYS[1], node, l)
end
h = h or {t = ARGV[4], a = {}}
h.n = {t = ARGV[2], a = entries}
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
return {'ok'}
