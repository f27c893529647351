-- Removes the record of an attempt that holds nothing any more (rolled back or aborted).
-- KEYS: the order's record. ARGV: token.
local v = redis.call('HMGET', KEYS[1], 'st', 'tok')
if v[2] == ARGV[1] and (v[1] == 'pending' or v[1] == 'aborted') then
  return redis.call('DEL', KEYS[1])
end
return 0
