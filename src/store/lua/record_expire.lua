-- Expires a held order past its expiry, or aborts an attempt past its deadline.
-- KEYS: the order's record, the log (reports 'expired'). ARGV: now, token of the attempt, retention in ms.
-- Returns the record, coded 'gone' (no such attempt), 'changed' (this call did it) or 'same'.
local v = redis.call('HMGET', KEYS[1], 'st', 'tok', 'exp', 'dl')
if not v[1] or v[2] ~= ARGV[2] then return {'gone'} end
local now = tonumber(ARGV[1])
-- a reroute under way is finished or undone first (by its deadline)
if v[1] == 'held' and redis.call('HEXISTS', KEYS[1], 'rr') == 1 then
  return record(KEYS[1], 'same')
end
if v[1] == 'held' and tonumber(v[3]) <= now then
  mark_expired(KEYS[1], ARGV[3])
  emit_record(KEYS[1], 'expired')
  return record(KEYS[1], 'changed')
end
if v[1] == 'pending' and (tonumber(v[4]) <= now or tonumber(v[3]) <= now) then
  redis.call('HSET', KEYS[1], 'st', 'aborted')
  return record(KEYS[1], 'changed')
end
return record(KEYS[1], 'same')
