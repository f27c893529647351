-- A whole reserve in one step, for a single Redis where every key may be in one script: the
-- record, every sku and the day's capacity, all or nothing.
-- KEYS: the order's record, the expiry set, the day's capacity used and by-order hashes, then
-- the level and holds hashes of each sku, then the log (reports 'created').
-- ARGV: order id, token, expires at, capacity day, body, allocations, what it may take (use of safety stock 1|0, then |units:share per protection closed to it),
-- capacity key TTL, expiry member, segment, count of capacity entries and node/units/line triples, count of
-- limits and node/limit pairs, then per sku: count of lines and line id/node/units triples.
-- Returns the record coded 'exists', {'short', sku number, node, wanted, available},
-- {'over', node, wanted, available}, {'corrupt', sku number, node, stored text} or {'created'}.
if redis.call('EXISTS', KEYS[1]) == 1 then return record(KEYS[1], 'exists') end
local i = 11
local cap_count = tonumber(ARGV[i])
local cap_want, cap_entries = capacity_lines(ARGV, i + 1, cap_count)
i = i + 1 + 3 * cap_count
local limits = {}
for _ = 1, tonumber(ARGV[i]) do
  limits[#limits + 1] = {ARGV[i + 1], tonumber(ARGV[i + 2])}
  i = i + 2
end
i = i + 1
local skus, k = {}, 5
while i <= #ARGV do
  local count = tonumber(ARGV[i])
  local want, nodes, entries = sku_lines(ARGV, i + 1, i + 3 * count)
  i = i + 1 + 3 * count
  local levels, refusal = sku_check(KEYS[k], want, nodes, ARGV[7])
  if refusal then
    if refusal[1] == 'corrupt' then return {'corrupt', #skus + 1, refusal[2], refusal[3]} end
    return {'short', #skus + 1, refusal[2], refusal[3], refusal[4]}
  end
  skus[#skus + 1] = {KEYS[k], KEYS[k + 1], want, nodes, levels, entries}
  k = k + 2
end
local refusal = capacity_check(KEYS[3], cap_want, limits)
if refusal then return refusal end
for _, s in ipairs(skus) do
  sku_apply(s[1], s[2], ARGV[1], ARGV[2], s[3], s[4], s[5], s[6], false)
end
if #cap_entries > 0 then
  capacity_apply(KEYS[3], KEYS[4], ARGV[1], ARGV[2], cap_entries, ARGV[8])
end
redis.call('HSET', KEYS[1], 'st', 'held', 'tok', ARGV[2], 'exp', ARGV[3], 'dl', ARGV[3],
  'day', ARGV[4], 'body', ARGV[5], 'al', ARGV[6], 'sg', ARGV[10])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[9])
emit_record(KEYS[1], 'created')
return {'created'}
