-- Shared by every script (prepended when the script is built).
-- Sequences are compared as decimal strings, so every u64 compares exactly.
local function seq_gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function num(v)
  return tonumber(v) or 0
end
-- The most units any stock figure may be (MAX_STOCK_UNITS): every figure up to it, and every
-- sum of a few of them, is an exact Lua number.
local MAX_UNITS = 1000000000000
-- A stock figure as text: a decimal from 0 to MAX_UNITS without leading zeros, or nil.
local function units(s)
  if type(s) ~= 'string' or #s > 13 or not string.match(s, '^%d+$') then return nil end
  if #s > 1 and string.sub(s, 1, 1) == '0' then return nil end
  local n = tonumber(s)
  if n > MAX_UNITS then return nil end
  return n
end
-- A feed sequence as text: a decimal u64 without leading zeros, or nil.
local function sequence(s)
  if type(s) ~= 'string' or #s > 20 or not string.match(s, '^%d+$') then return nil end
  if #s > 1 and string.sub(s, 1, 1) == '0' then return nil end
  if #s == 20 and s > '18446744073709551615' then return nil end
  return s
end
-- A whole number as text, exactly: '%d' would wrap anything beyond a C long.
local function fmt(n)
  return string.format('%.0f', n)
end
-- A node's level of a sku is one hash field, "on hand,reserved,safety,sequence,pending", with
-- ",reorder point" after it when the feed set one, so a read of every node is one HGETALL of
-- one field per node.
-- Returns the level; or nil when the node has none; or nil, the stored text and what of it
-- could be read, when a part does not parse or is out of bounds (written by something else):
-- every caller must handle that, since a script must never fail on data it did not write.
local function level_read(key, node)
  local v = redis.call('HGET', key, node)
  if not v then return nil end
  local a, b, c, d, e, f = string.match(v, '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$')
  if not a then
    a, b, c, d, e = string.match(v, '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$')
  end
  local l = {oh = units(a), rs = units(b), ss = units(c), sq = sequence(d), pd = units(e)}
  local rp_ok = true
  if f then
    l.rp = units(f)
    rp_ok = l.rp ~= nil
  end
  if l.oh and l.rs and l.ss and l.sq and l.pd and rp_ok then return l end
  return nil, v, l
end
local function level_new()
  return {oh = 0, rs = 0, ss = 0, sq = '0', pd = 0}
end
local function level_put(key, node, l)
  local v = fmt(l.oh) .. ',' .. fmt(l.rs) .. ',' .. fmt(l.ss) .. ',' .. l.sq .. ',' .. fmt(l.pd)
  if l.rp then v = v .. ',' .. fmt(l.rp) end
  redis.call('HSET', key, node, v)
end
-- A hold as stored in a sku's holds hash, or nil if it does not decode.
local function hold_decode(v)
  local ok, h = pcall(cjson.decode, v)
  if ok and type(h) == 'table' and type(h.a) == 'table' then return h end
  return nil
end
-- Whether a part of a hold is {line, node, units} as the scripts write it. A script checks
-- every part before it writes anything, so that one written by something else never fails it
-- half-way (a retry would then give back the parts before it again).
local function hold_part_ok(e)
  return type(e) == 'table' and type(e[1]) == 'string' and type(e[2]) == 'string'
    and type(e[3]) == 'number' and e[3] >= 0 and e[3] <= MAX_UNITS and e[3] == math.floor(e[3])
end
-- A snapshot's reorder point ('' keeps the one before, '-' removes it, else the new one)
-- applied to the one before.
local function reorder_apply(rp, before)
  if rp == '' then return before end
  if rp == '-' then return nil end
  return units(rp)
end
-- Rewrites an unreadable level from a snapshot: on hand, safety stock and reorder point as
-- given (safety: the readable old one, else 0, when not given; reorder point: the readable old
-- one when kept), the snapshot's sequence, and reserved and pending recounted from the sku's
-- holds, which list every order's units held at each node.
local function level_repair(lv, ho, node, oh, ss, rp, seq, partial)
  local rs, pd = 0, 0
  for _, v in ipairs(redis.call('HVALS', ho)) do
    local h = hold_decode(v)
    if h then
      for _, e in ipairs(h.a) do
        if type(e) == 'table' and e[2] == node and type(e[3]) == 'number' and e[3] > 0 then
          rs = rs + e[3]
          if h.p == 1 then pd = pd + e[3] end
        end
      end
      -- the new units of a reroute under way are held pending
      if type(h.n) == 'table' and type(h.n.a) == 'table' then
        for _, e in ipairs(h.n.a) do
          if type(e) == 'table' and e[2] == node and type(e[3]) == 'number' and e[3] > 0 then
            rs = rs + e[3]
            pd = pd + e[3]
          end
        end
      end
    end
  end
  local l = {oh = oh, rs = math.min(rs, MAX_UNITS), ss = ss or partial.ss or 0, sq = seq,
    pd = math.min(pd, MAX_UNITS), rp = reorder_apply(rp, partial.rp)}
  level_put(lv, node, l)
end
-- Gives back the new units a reroute under way holds beside hold `h` (its `n`), and drops
-- them from it.
local function reroute_give_back(lv, h)
  if type(h.n) == 'table' and type(h.n.a) == 'table' then
    for _, e in ipairs(h.n.a) do
      local l = hold_part_ok(e) and level_read(lv, e[2])
      if l then
        l.rs = l.rs - math.min(e[3], l.rs)
        l.pd = l.pd - math.min(e[3], l.pd)
        level_put(lv, e[2], l)
      end
    end
  end
  h.n = nil
end
-- A reservation record as the caller decodes it.
local record_fields = {'st', 'tok', 'exp', 'dl', 'day', 'body', 'al', 'rel', 'rdl', 'rr', 'rrdl',
  'rrd', 'hist', 'wt', 'wf'}
local function record(key, code)
  local r = redis.call('HMGET', key, unpack(record_fields))
  table.insert(r, 1, code)
  return r
end
-- Units waiting per line of a record: those waiting from the start (in its body) and later
-- (`wt`), less those that left the waiting units (`wf`: filled, cancelled, released). Returns
-- units per line, the sku per line, and the total.
local function net_waiting(key)
  local v = redis.call('HMGET', key, 'body', 'wt', 'wf')
  local per, skus, total = {}, {}, 0
  local function add(items, sign)
    if type(items) ~= 'table' then return end
    for _, w in ipairs(items) do
      if type(w) == 'table' and type(w.line_id) == 'string' and type(w.units) == 'number' then
        per[w.line_id] = (per[w.line_id] or 0) + sign * w.units
        if type(w.sku) == 'string' and w.sku ~= '' then skus[w.line_id] = w.sku end
      end
    end
  end
  local ok, b = pcall(cjson.decode, v[1] or '')
  if ok and type(b) == 'table' then add(b.waiting, 1) end
  for i, sign in ipairs({1, -1}) do
    local ok_l, items = pcall(cjson.decode, v[i + 1] or '[]')
    if ok_l then add(items, sign) end
  end
  for _, units in pairs(per) do
    if units > 0 then total = total + units end
  end
  return per, skus, total
end
-- Appends the JSON list `items` to the JSON list in field `field` of `key`, as written: a decode
-- and encode would turn empty lists into objects.
local function append_list(key, field, items)
  if items == '[]' or items == '{}' then return end
  local list = redis.call('HGET', key, field)
  if not list or list == '[]' or list == '{}' then
    redis.call('HSET', key, field, items)
  else
    redis.call('HSET', key, field, string.sub(list, 1, -2) .. ',' .. string.sub(items, 2))
  end
end
-- cjson writes an empty table as an object; allocations are a list.
local function encode_list(t)
  if #t == 0 then return '[]' end
  return cjson.encode(t)
end
-- An order is settled when nothing is outstanding and nothing waits: fulfilled if anything
-- shipped, else released.
local function settle(key, al, retention)
  local outstanding, shipped = 0, 0
  for _, a in ipairs(al) do
    outstanding = outstanding + a.quantity - a.shipped - a.released
    shipped = shipped + a.shipped
  end
  redis.call('HSET', key, 'al', encode_list(al))
  local _, _, waiting = net_waiting(key)
  if outstanding <= 0 and waiting <= 0 then
    if shipped > 0 then
      redis.call('HSET', key, 'st', 'fulfilled')
    else
      redis.call('HSET', key, 'st', 'released', 'exp', '0')
    end
    redis.call('PEXPIRE', key, retention)
  end
end
-- The lines of one sku's hold from ARGV[first..last] (line id, node, units): units wanted per
-- node, the nodes sorted, and the entries as stored.
local function sku_lines(args, first, last)
  local want, nodes, entries = {}, {}, {}
  for i = first, last, 3 do
    local node, units = args[i + 1], tonumber(args[i + 2])
    if not want[node] then
      want[node] = 0
      nodes[#nodes + 1] = node
    end
    want[node] = want[node] + units
    entries[#entries + 1] = {args[i], node, units}
  end
  table.sort(nodes)
  return want, nodes, entries
end
-- What a hold may take (see `HoldRequest::access_arg`): whether it may use safety stock, and
-- the protections closed to it, each {units, share}.
local function access_read(a)
  local closed = {}
  for u, s in string.gmatch(a, '|(%d+):([%d%.]+)') do
    closed[#closed + 1] = {tonumber(u), tonumber(s)}
  end
  return string.sub(a, 1, 1) == '1', closed
end
-- Whether a sku's levels have the units: the levels, or nil and {'short'|'busy', node, wanted,
-- available} ('busy': there if holds of attempts in flight were given back), or nil and
-- {'corrupt', node, stored text} for a level that cannot be read.
local function sku_check(lv, want, nodes, access)
  local use_safety, closed = access_read(access)
  local levels = {}
  for _, node in ipairs(nodes) do
    local l, bad = level_read(lv, node)
    if bad then return nil, {'corrupt', node, bad} end
    l = l or level_new()
    local free = l.oh - l.rs
    if not use_safety then free = free - l.ss end
    for _, p in ipairs(closed) do
      free = free - math.max(p[1], math.ceil(p[2] * l.oh))
    end
    if free < 0 then free = 0 end
    if want[node] > free then
      if want[node] <= free + l.pd then return nil, {'busy', node, want[node], free} end
      return nil, {'short', node, want[node], free}
    end
    levels[node] = l
  end
  return levels
end
-- Holds checked units: reserved goes up (and pending, for an attempt in steps).
local function sku_apply(lv, ho, order, token, want, nodes, levels, entries, pending)
  for _, node in ipairs(nodes) do
    local l = levels[node]
    l.rs = l.rs + want[node]
    if pending then l.pd = l.pd + want[node] end
    level_put(lv, node, l)
  end
  local hold = {t = token, a = entries}
  if pending then hold.p = 1 end
  redis.call('HSET', ho, order, cjson.encode(hold))
end
-- Whether the day's capacity has room: nil, or {'over', node, wanted, available}.
local function capacity_check(used, want, limits)
  for _, limit in ipairs(limits) do
    local wanted = want[limit[1]] or 0
    local available = math.max(limit[2] - num(redis.call('HGET', used, limit[1])), 0)
    if wanted > available then return {'over', limit[1], wanted, available} end
  end
  return nil
end
-- An order's capacity from `count` triples of args from `first` on (node, units, line): units
-- wanted per node, and the entries as the by-order hash keeps them, one per line and node, so
-- that a release gives back exactly the lines it names.
local function capacity_lines(args, first, count)
  local want, entries = {}, {}
  for i = first, first + 3 * (count - 1), 3 do
    local node, units = args[i], tonumber(args[i + 1])
    want[node] = (want[node] or 0) + units
    entries[#entries + 1] = {node, units, args[i + 2]}
  end
  return want, entries
end
local function capacity_apply(used, orders, order, token, entries, ttl)
  for _, e in ipairs(entries) do
    if e[2] > 0 then redis.call('HINCRBY', used, e[1], fmt(e[2])) end
  end
  redis.call('HSET', orders, order, cjson.encode({t = token, n = entries}))
  redis.call('PEXPIRE', used, ttl)
  redis.call('PEXPIRE', orders, ttl)
end
-- An attempt's hold of one slot: 'void' when the attempt was aborted, 'ok' when it holds this
-- already, 'conflict' when another attempt does, nil when it may go on.
local function attempt_check(void, holds, order, token)
  if redis.call('EXISTS', void) == 1 then return 'void' end
  local prev = redis.call('HGET', holds, order)
  if prev then
    local ok, h = pcall(cjson.decode, prev)
    if ok and type(h) == 'table' and h.t == token then return 'ok' end
    return 'conflict'
  end
  return nil
end
-- A held order past its expiry: every outstanding unit counts as released.
local function mark_expired(key, retention)
  local al = cjson.decode(redis.call('HGET', key, 'al'))
  for _, a in ipairs(al) do a.released = a.quantity - a.shipped end
  redis.call('HSET', key, 'st', 'expired', 'al', encode_list(al))
  redis.call('HDEL', key, 'rel', 'rdl')
  redis.call('PEXPIRE', key, retention)
end
-- Events. A script that reports a change appends it to its last KEY, the log: the events
-- stream on a single Redis, the outbox of the script's slot on a cluster (moved to the stream
-- by any replica; see store/redis/events.rs). The change and its event are one script, so no
-- crash can keep one without the other. EV_CAP, the entries the log keeps, is written in ahead
-- of this prelude when the script is built. The entry's id carries the time (Redis's, in ms).
local function emit(fields)
  redis.call('XADD', KEYS[#KEYS], 'MAXLEN', '~', EV_CAP, '*', unpack(fields))
end
-- A change to the order of `key`: kind, and for a release the lines it named (JSON). The
-- order id is the key's; the segment is kept beside the body (a record written before it was
-- has it only in the body, which is read then).
local function emit_record(key, kind, lines)
  local v = redis.call('HMGET', key, 'st', 'al', 'sg')
  local order = string.match(key, '{o:(.*)}$') or ''
  local seg = v[3]
  if not seg then
    local ok, b = pcall(cjson.decode, redis.call('HGET', key, 'body') or '')
    seg = (ok and type(b) == 'table' and tostring(b.segment or '')) or ''
  end
  emit({'k', kind, 'o', order, 'sg', seg, 'st', v[1] or '', 'al', v[2] or '[]', 'ln', lines or '[]'})
end
-- A node's level of the sku of level hash `lv` after a feed update changed it.
local function emit_level(lv, node)
  local sku = string.match(lv, '{s:(.*)}:lv$') or ''
  emit({'k', 'stock', 's', sku, 'n', node, 'lv', redis.call('HGET', lv, node) or ''})
end
