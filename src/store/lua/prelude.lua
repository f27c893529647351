-- Shared by every script (prepended when the script is built).
-- Sequences are compared as decimal strings, so every u64 compares exactly.
local function seq_gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function num(v)
  return tonumber(v) or 0
end
-- A reservation record as the caller decodes it.
local record_fields = {'st', 'tok', 'exp', 'dl', 'day', 'body', 'al', 'rel', 'rdl'}
local function record(key, code)
  local r = redis.call('HMGET', key, unpack(record_fields))
  table.insert(r, 1, code)
  return r
end
-- cjson writes an empty table as an object; allocations are a list.
local function encode_list(t)
  if #t == 0 then return '[]' end
  return cjson.encode(t)
end
-- An order is settled when nothing is outstanding: fulfilled if anything shipped, else released.
local function settle(key, al, retention)
  local outstanding, shipped = 0, 0
  for _, a in ipairs(al) do
    outstanding = outstanding + a.quantity - a.shipped - a.released
    shipped = shipped + a.shipped
  end
  redis.call('HSET', key, 'al', encode_list(al))
  if outstanding <= 0 then
    if shipped > 0 then
      redis.call('HSET', key, 'st', 'fulfilled')
    else
      redis.call('HSET', key, 'st', 'released', 'exp', '0')
    end
    redis.call('PEXPIRE', key, retention)
  end
end
