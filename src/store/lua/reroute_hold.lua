-- Holds the new units of a reroute at one sku, all nodes or none, beside the order's hold
-- (its `n`), pending until the reroute is finished (reroute_swap) or undone (reroute_undo).
-- Every sku the reroute touches gets an `n`, with no units where none are new: while it is
-- there a shipment of the order at this sku waits. The units leaving must still be held (a
-- shipment may have taken them since the reroute was planned).
-- KEYS: level hash, holds hash, the reroute's done mark at the sku (reroute_swap), its void
-- mark (reroute_undo).
-- ARGV: order id, the reroute's token, what it may take (as hold.lua), the record's token,
-- the node the units leave, count of lines leaving, line id and units per line leaving, then
-- per new part: line id, node, units.
-- Returns {'ok'} (now or before), {'void'} (undone before it came), {'conflict'} (another
-- reroute's units are there), {'changed'} (the units leaving are not held any more),
-- {'short'|'busy', node, wanted, available} or {'corrupt', node, stored text}.
if redis.call('EXISTS', KEYS[4]) == 1 then return {'void'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'ok'} end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
local h = prev and hold_decode(prev)
if h and h.n then
  if type(h.n) == 'table' and h.n.t == ARGV[2] then return {'ok'} end
  return {'conflict'}
end
local node, count = ARGV[5], tonumber(ARGV[6])
local i = 7
for _ = 1, count do
  local have = 0
  if h then
    for _, e in ipairs(h.a) do
      if hold_part_ok(e) and e[1] == ARGV[i] and e[2] == node then have = have + e[3] end
    end
  end
  if have < tonumber(ARGV[i + 1]) then return {'changed'} end
  i = i + 2
end
local want, nodes, entries = sku_lines(ARGV, i, #ARGV)
local levels, refusal = sku_check(KEYS[1], want, nodes, ARGV[3])
if refusal then return refusal end
for _, n in ipairs(nodes) do
  local l = levels[n]
  l.rs = l.rs + want[n]
  l.pd = l.pd + want[n]
  level_put(KEYS[1], n, l)
end
h = h or {t = ARGV[4], a = {}}
h.n = {t = ARGV[2], a = entries}
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
return {'ok'}
