-- Forgets a reroute not yet decided, before its new units are given back: from here it can
-- no longer be decided (record_reroute_decide finds nothing).
-- KEYS: the order's record. ARGV: the reroute's token.
-- Returns 1 when forgotten now, 2 when it was decided (it must be finished instead), 0 when
-- the record has no such reroute (forgotten or finished before).
local v = redis.call('HMGET', KEYS[1], 'rr', 'rrd')
if not v[1] then return 0 end
local ok, r = pcall(cjson.decode, v[1])
if not ok or type(r) ~= 'table' or r.t ~= ARGV[1] then return 0 end
if v[2] then return 2 end
redis.call('HDEL', KEYS[1], 'rr', 'rrdl')
return 1
