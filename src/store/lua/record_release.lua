-- Marks the named lines (or all) of a held or committed order as given back, after their stock
-- has been. KEYS: the order's record, the log (reports 'released'). ARGV: token, retention in ms, line ids...
-- The lines noted as being given back lose these; what other releases begun meanwhile noted
-- stays for them (or a sweep) to finish.
-- Returns the record, coded 'ok'.
local v = redis.call('HMGET', KEYS[1], 'st', 'tok', 'al', 'rel')
if v[2] ~= ARGV[1] or (v[1] ~= 'held' and v[1] ~= 'committed') then
  return record(KEYS[1], 'ok')
end
local only = nil
if #ARGV > 2 then
  only = {}
  for i = 3, #ARGV do only[ARGV[i]] = true end
end
local al = cjson.decode(v[3])
local changed = false
for _, a in ipairs(al) do
  if (only == nil or only[a.line_id]) and a.released ~= a.quantity - a.shipped then
    a.released = a.quantity - a.shipped
    changed = true
  end
end
-- units waiting on the lines given back wait no more
local per, skus = net_waiting(KEYS[1])
local dropped = {}
for line, units in pairs(per) do
  if units > 0 and (only == nil or only[line]) then
    dropped[#dropped + 1] = {line_id = line, sku = skus[line] or '', units = units}
  end
end
if #dropped > 0 then
  table.sort(dropped, function(a, b) return a.line_id < b.line_id end)
  append_list(KEYS[1], 'wf', cjson.encode(dropped))
  changed = true
end
local left = {}
if only and v[4] then
  local ok, noted = pcall(cjson.decode, v[4])
  if ok and type(noted) == 'table' then
    if #noted == 0 then
      left = nil
    else
      for _, line in ipairs(noted) do
        if not only[line] then left[#left + 1] = line end
      end
    end
  end
end
settle(KEYS[1], al, ARGV[2])
if changed or redis.call('HGET', KEYS[1], 'st') ~= v[1] then
  local named = {}
  for i = 3, #ARGV do named[#named + 1] = ARGV[i] end
  emit_record(KEYS[1], 'released', encode_list(named))
end
local st = redis.call('HGET', KEYS[1], 'st')
if st ~= 'held' and st ~= 'committed' then
  redis.call('HDEL', KEYS[1], 'rel', 'rdl')
elseif left == nil then
  -- a release of every line is still under way: it stays noted
elseif #left > 0 then
  redis.call('HSET', KEYS[1], 'rel', cjson.encode(left))
else
  redis.call('HDEL', KEYS[1], 'rel', 'rdl')
end
return record(KEYS[1], 'ok')
