-- Turns the alert states of one sku and reports each turn (see src/events/alerts.rs): a state
-- turns low when the ATS falls to or below the threshold, and ends when it rises above the
-- threshold plus the hysteresis.
-- The checks were made from the sku's levels as a replica read them; if the levels are not
-- those any more, nothing is turned: a replica that read them before a change must not report
-- on it after one that read them after (a recovery reported from a level already gone). The
-- change that moved them names the sku in the log, so every replica looks at it again.
-- KEYS: the sku's alert states hash, its levels hash, the log. ARGV: sku, the count of levels
-- read, then per level six values (node, on hand, reserved, safety, sequence, reorder point or
-- ''), then per check eight values: state name, ATS, threshold ('' none: a low state ends),
-- hysteresis, kind reported when it turns low, kind when it ends, node, segment.
-- Returns 'moved' when the levels changed since they were read; else per check its state
-- after (1 low, 0 not) and the kind reported ('' none).
local count = tonumber(ARGV[2])
if redis.call('HLEN', KEYS[2]) ~= count then return 'moved' end
for i = 3, 2 + count * 6, 6 do
  local l = level_read(KEYS[2], ARGV[i])
  if not l or fmt(l.oh) ~= ARGV[i + 1] or fmt(l.rs) ~= ARGV[i + 2] or fmt(l.ss) ~= ARGV[i + 3]
      or l.sq ~= ARGV[i + 4] or (l.rp and fmt(l.rp) or '') ~= ARGV[i + 5] then
    return 'moved'
  end
end
local out = {}
for i = 3 + count * 6, #ARGV, 8 do
  local field, ats, th, hy = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local was = redis.call('HGET', KEYS[1], field) == '1'
  local kind = nil
  if not was and th and ats <= th then
    redis.call('HSET', KEYS[1], field, '1')
    kind = ARGV[i + 4]
  elseif was and (not th or ats > th + hy) then
    redis.call('HSET', KEYS[1], field, '0')
    kind = ARGV[i + 5]
  end
  local low = was
  if kind then
    emit({'k', kind, 's', ARGV[1], 'n', ARGV[i + 6], 'sg', ARGV[i + 7], 'ats', ARGV[i + 1],
      'th', ARGV[i + 2]})
    low = not was
  end
  out[#out + 1] = {low and 1 or 0, kind or ''}
end
return out
