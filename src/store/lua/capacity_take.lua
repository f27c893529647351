-- Takes an order's units of one day's node capacity, within each limit, all or nothing.
-- KEYS: used-by-node hash, by-order hash, void marker of the attempt.
-- ARGV: order id, attempt token, key TTL in ms, count of entries, node, units and line per
-- entry, then node and daily limit per limited node.
-- Returns {'ok'}, {'void'}, {'conflict'} or {'over', node, wanted, available}.
local seen = attempt_check(KEYS[3], KEYS[2], ARGV[1], ARGV[2])
if seen then return {seen} end
local n = tonumber(ARGV[4])
local want, entries = capacity_lines(ARGV, 5, n)
local limits = {}
for i = 5 + 3 * n, #ARGV, 2 do
  limits[#limits + 1] = {ARGV[i], tonumber(ARGV[i + 1])}
end
local refusal = capacity_check(KEYS[1], want, limits)
if refusal then return refusal end
capacity_apply(KEYS[1], KEYS[2], ARGV[1], ARGV[2], entries, ARGV[3])
return {'ok'}
