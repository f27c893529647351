-- Holds an order's units of one sku, all nodes or none.
-- KEYS: level hash, holds hash, void marker of this attempt.
-- ARGV: order id, attempt token, what it may take (use of safety stock 1|0, then |units:share per protection closed to it), then per line: line id, node, units.
-- The units are held *pending* (counted as pending in the level too) until the attempt is confirmed.
-- Returns {'ok'}, {'void'} (the attempt was aborted), {'conflict'} (another attempt holds it),
-- {'short', node, wanted, available}, or {'busy', node, wanted, available} when the units would
-- be there if pending holds of other attempts were given back, or {'corrupt', node, stored text}
-- when a level cannot be read.
local seen = attempt_check(KEYS[3], KEYS[2], ARGV[1], ARGV[2])
if seen then return {seen} end
local want, nodes, entries = sku_lines(ARGV, 4, #ARGV)
local levels, refusal = sku_check(KEYS[1], want, nodes, ARGV[3])
if refusal then return refusal end
sku_apply(KEYS[1], KEYS[2], ARGV[1], ARGV[2], want, nodes, levels, entries, true)
return {'ok'}
