-- A shipment of an order's units of one sku from one node: on hand, reserved and the order's
-- hold all go down.
-- KEYS: level hash, holds hash. ARGV: node, sequence, order id, quantity, and '1' when the
-- order may ship or the reason it may not.
-- Returns {'stale'}, {'bad', reason}, {'short', outstanding}, or {'ok', line, units, ...}.
local node, seq, order, qty = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local last = redis.call('HGET', KEYS[1], 'sq:' .. node) or '0'
if not seq_gt(seq, last) then return {'stale'} end
if ARGV[5] ~= '1' then return {'bad', ARGV[5]} end
local prev = redis.call('HGET', KEYS[2], order)
local h = {a = {}}
if prev then h = cjson.decode(prev) end
local outstanding = 0
for _, e in ipairs(h.a) do
  if e[2] == node then outstanding = outstanding + e[3] end
end
if qty > outstanding then return {'short', outstanding} end
local left, keep, out = qty, {}, {'ok'}
for _, e in ipairs(h.a) do
  if e[2] == node and left > 0 then
    local take = math.min(left, e[3])
    e[3] = e[3] - take
    left = left - take
    out[#out + 1] = e[1]
    out[#out + 1] = take
    if h.p == 1 then
      local pending = num(redis.call('HGET', KEYS[1], 'pd:' .. node))
      redis.call('HINCRBY', KEYS[1], 'pd:' .. node, -math.min(take, pending))
    end
  end
  if e[3] > 0 then keep[#keep + 1] = e end
end
local on_hand = num(redis.call('HGET', KEYS[1], 'oh:' .. node))
local reserved = num(redis.call('HGET', KEYS[1], 'rs:' .. node))
redis.call('HSET', KEYS[1], 'oh:' .. node, math.max(on_hand - qty, 0),
  'rs:' .. node, math.max(reserved - qty, 0), 'sq:' .. node, seq)
if #keep == 0 then
  redis.call('HDEL', KEYS[2], order)
else
  h.a = keep
  redis.call('HSET', KEYS[2], order, cjson.encode(h))
end
return out
