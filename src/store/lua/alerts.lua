-- Turns the alert states of one sku and reports each turn (see src/events/alerts.rs): a state
-- turns low when the ATS falls to or below the threshold, and ends when it rises above the
-- threshold plus the hysteresis.
-- KEYS: the sku's alert states hash, the log. ARGV: sku, then per check eight values: state
-- name, ATS, threshold ('' none: a low state ends), hysteresis, kind reported when it turns
-- low, kind when it ends, node,
-- segment. Returns per check its state after (1 low, 0 not) and the kind reported ('' none).
local out = {}
for i = 2, #ARGV, 8 do
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
