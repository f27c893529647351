-- Finishes a decided reroute at one sku: the units leave the node (reserved goes down, and on
-- hand too for units that do not exist), and the new units stop being pending and join the
-- order's hold. Idempotent: a mark of the reroute beside the hold notes it done.
-- KEYS: level hash, holds hash, the reroute's done mark at the sku, the log (on hand that
-- changed is reported as a stock event).
-- ARGV: order id, the reroute's token, node, '1' when the units leave on hand, retention in ms,
-- then line id and units per line leaving the node.
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
local h = prev and hold_decode(prev)
h = h or {a = {}}
local node = ARGV[3]
local gone = 0
for i = 6, #ARGV, 2 do
  local left = tonumber(ARGV[i + 1])
  for _, e in ipairs(h.a) do
    if hold_part_ok(e) and e[1] == ARGV[i] and e[2] == node and left > 0 then
      local take = math.min(left, e[3])
      e[3] = e[3] - take
      left = left - take
      gone = gone + take
    end
  end
end
-- a hold whose reserve is not yet confirmed counts its units as pending too
local pending = h.p == 1
if gone > 0 then
  local l = level_read(KEYS[1], node)
  if l then
    l.rs = l.rs - math.min(gone, l.rs)
    if pending then l.pd = l.pd - math.min(gone, l.pd) end
    if ARGV[4] == '1' then l.oh = math.max(l.oh - gone, 0) end
    level_put(KEYS[1], node, l)
    if ARGV[4] == '1' then emit_level(KEYS[1], node) end
  end
end
local keep = {}
for _, e in ipairs(h.a) do
  if not hold_part_ok(e) or e[3] > 0 then keep[#keep + 1] = e end
end
if type(h.n) == 'table' and h.n.t == ARGV[2] then
  for _, e in ipairs(h.n.a or {}) do
    -- joining a pending hold, they stay pending until it is confirmed
    local l = not pending and hold_part_ok(e) and level_read(KEYS[1], e[2])
    if l then
      l.pd = l.pd - math.min(e[3], l.pd)
      level_put(KEYS[1], e[2], l)
    end
    keep[#keep + 1] = e
  end
  h.n = nil
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[5])
if #keep == 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  h.a = keep
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
end
return 1
