-- Gives back what an order holds of one sku: every line, or the lines named. Idempotent.
-- KEYS: level hash, holds hash, void marker of the attempt.
-- ARGV: order id, attempt token ('' for any), void marker TTL in ms (0 for none), line ids...
-- Returns line, node, units for each part given back. The hold goes even where the level cannot
-- be read: a snapshot that repairs the level recounts reserved from the holds left.
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[3], '1', 'PX', ARGV[3]) end
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return {} end
local h = hold_decode(prev)
if not h then return {} end
if ARGV[2] ~= '' and h.t ~= ARGV[2] then return {} end
local only = nil
if #ARGV > 3 then
  only = {}
  for i = 4, #ARGV do only[ARGV[i]] = true end
end
-- every part is checked before anything is written; one that is not as the scripts write it
-- stays in the hold (a snapshot's recount skips it too)
local keep, give, out = {}, {}, {}
for _, e in ipairs(h.a) do
  if hold_part_ok(e) and (only == nil or only[e[1]]) then
    give[#give + 1] = e
  else
    keep[#keep + 1] = e
  end
end
for _, e in ipairs(give) do
  local l = level_read(KEYS[1], e[2])
  if l then
    l.rs = l.rs - math.min(e[3], l.rs)
    if h.p == 1 then l.pd = l.pd - math.min(e[3], l.pd) end
    level_put(KEYS[1], e[2], l)
  end
  out[#out + 1] = e[1]
  out[#out + 1] = e[2]
  out[#out + 1] = e[3]
end
-- the new units of a reroute under way go with the whole hold
if only == nil then reroute_give_back(KEYS[1], h) end
if #keep == 0 and not h.n then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  h.a = keep
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(h))
end
return out
