-- Commits a held order; a hold past its expiry becomes expired instead.
-- KEYS: the order's record, the log (reports 'committed' or 'expired'). ARGV: now, retention of finished records in ms.
-- Returns the record, coded 'none', 'expired' (this call expired it: give its stock back),
-- 'committed' (this call committed it), 'busy' (a reroute is under way: it is finished or
-- undone first) or 'ok'.
local v = redis.call('HMGET', KEYS[1], 'st', 'exp')
if not v[1] then return {'none'} end
if redis.call('HEXISTS', KEYS[1], 'rr') == 1 then return record(KEYS[1], 'busy') end
if v[1] == 'held' then
  if tonumber(v[2]) <= tonumber(ARGV[1]) then
    mark_expired(KEYS[1], ARGV[2])
    emit_record(KEYS[1], 'expired')
    return record(KEYS[1], 'expired')
  end
  redis.call('HSET', KEYS[1], 'st', 'committed', 'exp', '0')
  emit_record(KEYS[1], 'committed')
  return record(KEYS[1], 'committed')
end
return record(KEYS[1], 'ok')
