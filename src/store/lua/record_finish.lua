-- Ends an attempt: its pending record becomes held. Fails (0) if the attempt was aborted.
-- KEYS: the order's record, the log (reports 'created'). ARGV: token.
local v = redis.call('HMGET', KEYS[1], 'st', 'tok')
if v[1] == 'pending' and v[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'st', 'held')
  emit_record(KEYS[1], 'created')
  return 1
end
return 0
