-- Counts shipped units against a committed order's allocations.
-- KEYS: the order's record, the log (reports 'fulfilled' when it settles so). ARGV: token, retention in ms, sku, node, then line id and units.
local v = redis.call('HMGET', KEYS[1], 'st', 'tok', 'al')
if v[2] ~= ARGV[1] or v[1] ~= 'committed' then return 0 end
local al = cjson.decode(v[3])
for i = 5, #ARGV, 2 do
  local left = tonumber(ARGV[i + 1])
  for _, a in ipairs(al) do
    if left > 0 and a.line_id == ARGV[i] and a.sku == ARGV[3] and a.node_id == ARGV[4] then
      local take = math.min(left, a.quantity - a.shipped - a.released)
      a.shipped = a.shipped + take
      left = left - take
    end
  end
end
settle(KEYS[1], al, ARGV[2])
if redis.call('HGET', KEYS[1], 'st') == 'fulfilled' then emit_record(KEYS[1], 'fulfilled') end
return 1
