-- Starts an attempt at reserving an order, unless its record exists.
-- KEYS: the order's record. ARGV: token, expires at, pending deadline, capacity day, body,
-- allocations, segment (kept apart from the body for events).
-- Returns the record, coded 'created' or 'exists'.
if redis.call('EXISTS', KEYS[1]) == 1 then return record(KEYS[1], 'exists') end
redis.call('HSET', KEYS[1], 'st', 'pending', 'tok', ARGV[1], 'exp', ARGV[2], 'dl', ARGV[3],
  'day', ARGV[4], 'body', ARGV[5], 'al', ARGV[6], 'sg', ARGV[7])
return record(KEYS[1], 'created')
