-- Marks the named lines (or all) of a held or committed order as given back, after their stock
-- has been. KEYS: the order's record. ARGV: token, retention in ms, line ids...
-- Returns the record, coded 'ok'.
local v = redis.call('HMGET', KEYS[1], 'st', 'tok', 'al')
if v[2] ~= ARGV[1] or (v[1] ~= 'held' and v[1] ~= 'committed') then
  return record(KEYS[1], 'ok')
end
local only = nil
if #ARGV > 2 then
  only = {}
  for i = 3, #ARGV do only[ARGV[i]] = true end
end
local al = cjson.decode(v[3])
for _, a in ipairs(al) do
  if only == nil or only[a.line_id] then a.released = a.quantity - a.shipped end
end
redis.call('HDEL', KEYS[1], 'rel', 'rdl')
settle(KEYS[1], al, ARGV[2])
return record(KEYS[1], 'ok')
