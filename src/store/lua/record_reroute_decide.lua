-- The point of no return of a reroute whose new units are all held: from here it is finished,
-- never undone. KEYS: the order's record. ARGV: the reroute's token.
-- Returns 1 when decided (now or before), 0 when the reroute is not the record's any more.
local rr = redis.call('HGET', KEYS[1], 'rr')
if not rr then return 0 end
local ok, r = pcall(cjson.decode, rr)
if not ok or type(r) ~= 'table' or r.t ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rrd', '1')
return 1
