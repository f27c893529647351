-- A shipment of an order's units of one sku from one node: on hand, reserved and the order's
-- hold all go down.
-- KEYS: level hash, holds hash, the log (an applied shipment is reported as a stock event). ARGV: node, sequence, order id, quantity, and '1' when the
-- order may ship or the reason it may not.
-- Returns {'stale'}, {'bad', reason}, {'short', outstanding}, {'busy'} (a reroute of the order
-- is under way here), {'corrupt', stored text} when the level cannot be read, or
-- {'ok', line, units, ...}.
local node, seq, order, qty = ARGV[1], ARGV[2], ARGV[3], units(ARGV[4])
if not qty or not sequence(seq) then return {'bad', 'quantity: out of bounds'} end
local l, bad = level_read(KEYS[1], node)
if bad then return {'corrupt', bad} end
l = l or level_new()
if not seq_gt(seq, l.sq) then return {'stale'} end
if ARGV[5] ~= '1' then return {'bad', ARGV[5]} end
local prev = redis.call('HGET', KEYS[2], order)
local h = {a = {}}
if prev then h = hold_decode(prev) or {a = {}} end
-- a reroute of the order is under way at this sku: the shipment waits for it
if h.n then return {'busy'} end
local outstanding = 0
for _, e in ipairs(h.a) do
  if hold_part_ok(e) and e[2] == node then outstanding = outstanding + e[3] end
end
if qty > outstanding then return {'short', outstanding} end
local left, keep, out = qty, {}, {'ok'}
for _, e in ipairs(h.a) do
  if hold_part_ok(e) and e[2] == node and left > 0 then
    local take = math.min(left, e[3])
    e[3] = e[3] - take
    left = left - take
    out[#out + 1] = e[1]
    out[#out + 1] = take
    if h.p == 1 then l.pd = l.pd - math.min(take, l.pd) end
  end
  if not hold_part_ok(e) or e[3] > 0 then keep[#keep + 1] = e end
end
l.oh = math.max(l.oh - qty, 0)
l.rs = math.max(l.rs - qty, 0)
l.sq = seq
level_put(KEYS[1], node, l)
emit_level(KEYS[1], node)
if #keep == 0 then
  redis.call('HDEL', KEYS[2], order)
else
  h.a = keep
  redis.call('HSET', KEYS[2], order, cjson.encode(h))
end
return out
