-- Feed snapshots and deltas for the skus of one slot, in order.
-- KEYS: level hashes. ARGV: per update six values: key index, node, sequence, kind (s|d),
-- value (on hand or change), safety stock ('' to keep).
-- Returns per update: 1 applied, 0 stale, or -(on hand + 1) when a delta would go below zero.
local out = {}
for i = 1, #ARGV, 6 do
  local key = KEYS[tonumber(ARGV[i])]
  local node, seq, kind, value, safety = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local last = redis.call('HGET', key, 'sq:' .. node) or '0'
  if not seq_gt(seq, last) then
    out[#out + 1] = 0
  elseif kind == 's' then
    redis.call('HSET', key, 'oh:' .. node, value, 'sq:' .. node, seq)
    if safety ~= '' then redis.call('HSET', key, 'ss:' .. node, safety) end
    redis.call('HSETNX', key, 'rs:' .. node, '0')
    out[#out + 1] = 1
  else
    local on_hand = num(redis.call('HGET', key, 'oh:' .. node))
    if on_hand + tonumber(value) < 0 then
      out[#out + 1] = -1 - on_hand
    else
      redis.call('HINCRBY', key, 'oh:' .. node, value)
      redis.call('HSET', key, 'sq:' .. node, seq)
      redis.call('HSETNX', key, 'rs:' .. node, '0')
      out[#out + 1] = 1
    end
  end
end
return out
