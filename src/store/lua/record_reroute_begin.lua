-- Starts a reroute of a held or committed order: notes it in the record (what leaves which
-- node, what is held anew, the decision) with the deadline by which a sweep finishes or undoes
-- it if the replica doing it stops. See store/redis/reroute.rs.
-- KEYS: the order's record. ARGV: reroute id, the reroute as JSON (its token in `t`),
-- deadline, node, now, then line id and units per line leaving the node.
-- Returns the record, coded 'ok', 'repeat' (this reroute id was applied before), 'busy' (a
-- release or another reroute is under way) or 'changed' (not held or committed, the node no
-- longer has those units outstanding, or the units it takes from those waiting no longer
-- wait); or {'gone'} without a record.
local v = redis.call('HMGET', KEYS[1], 'st', 'rel', 'rr', 'hist', 'al', 'exp')
if not v[1] then return {'gone'} end
if v[4] then
  local ok, hist = pcall(cjson.decode, v[4])
  if ok and type(hist) == 'table' then
    for _, d in ipairs(hist) do
      if type(d) == 'table' and d.reroute_id == ARGV[1] then return record(KEYS[1], 'repeat') end
    end
  end
end
if v[1] ~= 'held' and v[1] ~= 'committed' then return record(KEYS[1], 'changed') end
if v[1] == 'held' and tonumber(v[6]) <= tonumber(ARGV[5]) then return record(KEYS[1], 'changed') end
if v[2] or v[3] then return record(KEYS[1], 'busy') end
local ok, al = pcall(cjson.decode, v[5] or '[]')
if not ok or type(al) ~= 'table' then return record(KEYS[1], 'changed') end
local node = ARGV[4]
for i = 6, #ARGV, 2 do
  local outstanding = 0
  for _, a in ipairs(al) do
    if a.line_id == ARGV[i] and a.node_id == node then
      outstanding = outstanding + a.quantity - a.shipped - a.released
    end
  end
  if outstanding < tonumber(ARGV[i + 1]) then return record(KEYS[1], 'changed') end
end
local ok_n, note = pcall(cjson.decode, ARGV[2])
if not ok_n or type(note) ~= 'table' or type(note.hold) ~= 'table' then
  return record(KEYS[1], 'changed')
end
local taken = note.hold.from_waiting
if type(taken) == 'table' and #taken > 0 then
  local per = net_waiting(KEYS[1])
  for _, t in ipairs(taken) do
    per[t.line_id] = (per[t.line_id] or 0) - t.units
    if per[t.line_id] < 0 then return record(KEYS[1], 'changed') end
  end
end
redis.call('HSET', KEYS[1], 'rr', ARGV[2], 'rrdl', ARGV[3])
redis.call('HDEL', KEYS[1], 'rrd')
return record(KEYS[1], 'ok')
