-- Finishes a decided reroute (or fill, or expiry of waiting units) in the record: the units
-- leave the node's allocations (their quantity goes down, `rejected` up), the new ones join,
-- the units taken from those waiting leave them, the units left waiting and the decision are
-- added, and the change is reported ('rerouted' or 'filled', and 'cancelled' when units were
-- dropped).
-- KEYS: the order's record, the log. ARGV: the reroute's token, retention in ms, the decision
-- as a JSON list of one, the new waiting units as a JSON list, the units taken from those
-- waiting as a JSON list, the lines moved as a JSON list.
-- Returns the record, coded 'ok'; or 'gone' when the reroute is not the record's (finished
-- before, or never decided).
local v = redis.call('HMGET', KEYS[1], 'rr', 'rrd', 'al', 'hist', 'wt')
if not v[1] or not v[2] then return record(KEYS[1], 'gone') end
local ok, r = pcall(cjson.decode, v[1])
if not ok or type(r) ~= 'table' or r.t ~= ARGV[1] then return record(KEYS[1], 'gone') end
local h = r.hold
local al = cjson.decode(v[3] or '[]')
if type(al) ~= 'table' then al = {} end
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
-- the decision and the waiting units are appended as the caller wrote them
append_list(KEYS[1], 'hist', ARGV[3])
append_list(KEYS[1], 'wt', ARGV[4])
append_list(KEYS[1], 'wf', ARGV[5])
redis.call('HDEL', KEYS[1], 'rr', 'rrd', 'rrdl')
-- settled only when nothing is outstanding and nothing waits
settle(KEYS[1], al, ARGV[2])
local kind = type(h.decision) == 'table' and h.decision.kind or 'reroute'
if kind == 'fill' then
  emit_record(KEYS[1], 'filled', ARGV[6])
elseif kind ~= 'expire' then
  emit_record(KEYS[1], 'rerouted', ARGV[6])
end
if (h.cancelled or 0) > 0 then emit_record(KEYS[1], 'cancelled', ARGV[6]) end
return record(KEYS[1], 'ok')
