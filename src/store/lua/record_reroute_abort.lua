-- Forgets a reroute not yet decided, once its new units are given back.
-- KEYS: the order's record. ARGV: the reroute's token.
-- Returns 1 when forgotten, 0 when it was not the record's or was decided.
local v = redis.call('HMGET', KEYS[1], 'rr', 'rrd')
if not v[1] or v[2] then return 0 end
local ok, r = pcall(cjson.decode, v[1])
if not ok or type(r) ~= 'table' or r.t ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'rr', 'rrdl')
return 1
