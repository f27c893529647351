-- Gives back an order's capacity of one day: all of it (an expiry or a rollback), or that of
-- the lines a release names. The by-order hash keeps the capacity per line and node, and a
-- line given back is marked so: each line's capacity comes back once, whichever call finishes
-- its release, and releases of different lines at once never undo each other.
-- KEYS: used-by-node hash, by-order hash, void marker of the attempt.
-- ARGV: order id, attempt token ('' for any), void marker TTL in ms (0 for none); for a
-- release then '1' when it covers every line (else '0'), and line, node and units the line
-- keeps (those shipped) per line and node. Entries kept per node only (written before
-- capacity was kept per line) go back with a release of every line, down to what it keeps.
-- Every entry and counter is checked before anything is written: one written by something
-- else is left as it is rather than failing the script half-way.
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[3], '1', 'PX', ARGV[3]) end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return 0 end
local ok, h = pcall(cjson.decode, prev)
if not ok or type(h) ~= 'table' or type(h.n) ~= 'table' then return 0 end
if ARGV[2] ~= '' and h.t ~= ARGV[2] then return 0 end
local release, whole, kept_by_line, kept_at = #ARGV > 3, true, {}, {}
if release then
  whole = ARGV[4] == '1'
  for i = 5, #ARGV, 3 do
    local kept = tonumber(ARGV[i + 2]) or 0
    kept_by_line[ARGV[i] .. '\n' .. ARGV[i + 1]] = kept
    kept_at[ARGV[i + 1]] = (kept_at[ARGV[i + 1]] or 0) + kept
  end
end
local function entry_ok(e)
  return type(e) == 'table' and type(e[1]) == 'string' and type(e[2]) == 'number'
    and e[2] >= 0 and e[2] == math.floor(e[2]) and (e[3] == nil or type(e[3]) == 'string')
end
local keep, give, nodes, total = {}, {}, {}, 0
for _, e in ipairs(h.n) do
  local kept = nil
  if not entry_ok(e) then
    keep[#keep + 1] = e
  elseif not release then
    kept = 0
  elseif e[3] == nil then
    if whole then kept = math.min(kept_at[e[1]] or 0, e[2]) else keep[#keep + 1] = e end
  else
    local target = kept_by_line[e[3] .. '\n' .. e[1]]
    if target and e[4] ~= 1 then
      kept = math.min(target, e[2])
      if kept > 0 then keep[#keep + 1] = {e[1], kept, e[3], 1} end
    else
      keep[#keep + 1] = e
    end
  end
  if kept and e[3] == nil and kept > 0 then keep[#keep + 1] = {e[1], kept} end
  if kept and e[2] > kept then
    if not give[e[1]] then
      give[e[1]] = 0
      nodes[#nodes + 1] = e[1]
    end
    give[e[1]] = give[e[1]] + e[2] - kept
    total = total + e[2] - kept
  end
end
-- a counter that is not a whole number cannot be counted down (HINCRBY would fail): leave it
local take = {}
for _, node in ipairs(nodes) do
  local used = redis.call('HGET', KEYS[1], node)
  if used and string.match(used, '^%d+$') then
    local n = math.min(give[node], tonumber(used))
    if n > 0 then take[#take + 1] = {node, n} end
  end
end
for _, t in ipairs(take) do redis.call('HINCRBY', KEYS[1], t[1], fmt(-t[2])) end
if #keep == 0 then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  h.n = keep
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
end
return total
