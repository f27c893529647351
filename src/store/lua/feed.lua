-- Feed snapshots and deltas for the skus of one slot, in order.
-- KEYS: level hashes. ARGV: per update six values: key index, node, sequence, kind (s|d),
-- value (on hand or change), safety stock ('' to keep).
-- Returns per update: 1 applied, 0 stale, or -(on hand + 1) when a delta would go below zero.
local out = {}
for i = 1, #ARGV, 6 do
  local key = KEYS[tonumber(ARGV[i])]
  local node, seq, kind, value, safety = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local l = level_get(key, node) or level_new()
  if not seq_gt(seq, l.sq) then
    out[#out + 1] = 0
  elseif kind == 's' then
    l.oh = tonumber(value)
    if safety ~= '' then l.ss = tonumber(safety) end
    l.sq = seq
    level_put(key, node, l)
    out[#out + 1] = 1
  elseif l.oh + tonumber(value) < 0 then
    out[#out + 1] = -1 - l.oh
  else
    l.oh = l.oh + tonumber(value)
    l.sq = seq
    level_put(key, node, l)
    out[#out + 1] = 1
  end
end
return out
