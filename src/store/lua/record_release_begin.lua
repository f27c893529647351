-- Notes in a held or committed order's record which lines are being given back, and by when a
-- sweep should finish the release if the replica doing it stops.
-- KEYS: the order's record. ARGV: token, line ids as a JSON list (empty: all), deadline.
-- Returns the record, coded 'ok' or 'same' (nothing to release).
local v = redis.call('HMGET', KEYS[1], 'st', 'tok')
if v[2] ~= ARGV[1] or (v[1] ~= 'held' and v[1] ~= 'committed') then
  return record(KEYS[1], 'same')
end
redis.call('HSET', KEYS[1], 'rel', ARGV[2], 'rdl', ARGV[3])
return record(KEYS[1], 'ok')
