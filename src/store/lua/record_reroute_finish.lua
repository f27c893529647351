-- Finishes a decided reroute in the record: the units leave the node's allocations (their
-- quantity goes down, `rejected` up), the new ones join, the waiting units and the decision
-- are added, and the change is reported ('rerouted', and 'cancelled' when units were dropped).
-- KEYS: the order's record, the log. ARGV: the reroute's token, retention in ms, the decision
-- as a JSON list of one, the waiting units as a JSON list.
-- Returns the record, coded 'ok'; or 'gone' when the reroute is not the record's (finished
-- before, or never decided).
local v = redis.call('HMGET', KEYS[1], 'rr', 'rrd', 'al', 'hist', 'wt')
if not v[1] or not v[2] then return record(KEYS[1], 'gone') end
local ok, r = pcall(cjson.decode, v[1])
if not ok or type(r) ~= 'table' or r.t ~= ARGV[1] then return record(KEYS[1], 'gone') end
local h = r.hold
local al = cjson.decode(v[3] or '[]')
if type(al) ~= 'table' then al = {} end
local lines = {}
for _, g in ipairs(h.gone) do
  local left = g.units
  for _, a in ipairs(al) do
    if a.line_id == g.line_id and a.node_id == h.node_id and left > 0 then
      local take = math.min(left, math.max(a.quantity - a.shipped - a.released, 0))
      a.quantity = a.quantity - take
      a.rejected = (a.rejected or 0) + take
      left = left - take
    end
  end
  lines[#lines + 1] = g.line_id
end
for _, n in ipairs(h.new) do
  local found = false
  for _, a in ipairs(al) do
    if a.line_id == n.line_id and a.node_id == n.node_id then
      a.quantity = a.quantity + n.quantity
      found = true
      break
    end
  end
  if not found then al[#al + 1] = n end
end
-- the decision and the waiting units are appended as the caller wrote them: a decode and
-- encode here would turn their empty lists into objects
local function append(list, items)
  if not list or list == '[]' or list == '{}' then return items end
  if items == '[]' then return list end
  return string.sub(list, 1, -2) .. ',' .. string.sub(items, 2)
end
local wt = append(v[5], ARGV[4])
redis.call('HSET', KEYS[1], 'hist', append(v[4], ARGV[3]), 'wt', wt)
redis.call('HDEL', KEYS[1], 'rr', 'rrd', 'rrdl')
-- units waiting keep the order open, even with nothing outstanding at any node
local ok_wt, waiting = pcall(cjson.decode, wt)
local body_waiting = false
local ok_b, b = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'body') or '')
if ok_b and type(b) == 'table' and type(b.waiting) == 'table' and #b.waiting > 0 then
  body_waiting = true
end
if body_waiting or (ok_wt and type(waiting) == 'table' and #waiting > 0) then
  redis.call('HSET', KEYS[1], 'al', encode_list(al))
else
  settle(KEYS[1], al, ARGV[2])
end
local moved = encode_list(lines)
emit_record(KEYS[1], 'rerouted', moved)
if (h.cancelled or 0) > 0 then emit_record(KEYS[1], 'cancelled', moved) end
return record(KEYS[1], 'ok')
