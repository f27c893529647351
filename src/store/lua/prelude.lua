-- Shared by every script (prepended when the script is built).
-- Sequences are compared as decimal strings, so every u64 compares exactly.
local function seq_gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function num(v)
  return tonumber(v) or 0
end
-- A node's level of a sku is one hash field, "on hand,reserved,safety,sequence,pending", so a
-- read of every node is one HGETALL of one field per node.
local function level_get(key, node)
  local v = redis.call('HGET', key, node)
  if not v then return nil end
  local oh, rs, ss, sq, pd = string.match(v, '^(%d+),(%d+),(%d+),(%d+),(%d+)$')
  return {oh = tonumber(oh), rs = tonumber(rs), ss = tonumber(ss), sq = sq, pd = tonumber(pd)}
end
local function level_new()
  return {oh = 0, rs = 0, ss = 0, sq = '0', pd = 0}
end
local function level_put(key, node, l)
  redis.call('HSET', key, node, string.format('%d,%d,%d,%s,%d', l.oh, l.rs, l.ss, l.sq, l.pd))
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
