-- Notes in a held or committed order's record which lines are being given back, and by when a
-- sweep should finish the release if the replica doing it stops. Releases begun at once each
-- add their lines (none named: all), so a retry or the sweep finishes every one of them.
-- KEYS: the order's record. ARGV: token, line ids as a JSON list (empty: all), deadline.
-- Returns the record, coded 'ok', 'same' (nothing to release) or 'busy' (a reroute is under
-- way: it is finished or undone first).
local v = redis.call('HMGET', KEYS[1], 'st', 'tok', 'rel', 'rdl')
if v[2] ~= ARGV[1] or (v[1] ~= 'held' and v[1] ~= 'committed') then
  return record(KEYS[1], 'same')
end
if redis.call('HEXISTS', KEYS[1], 'rr') == 1 then return record(KEYS[1], 'busy') end
local lines, deadline = ARGV[2], ARGV[3]
if v[3] then
  local ok, had = pcall(cjson.decode, v[3])
  local new = cjson.decode(ARGV[2])
  if not ok or type(had) ~= 'table' then
    lines = ARGV[2]
  elseif #had > 0 and #new > 0 then
    local seen, union = {}, {}
    for _, list in ipairs({had, new}) do
      for _, line in ipairs(list) do
        if type(line) == 'string' and not seen[line] then
          seen[line] = true
          union[#union + 1] = line
        end
      end
    end
    lines = cjson.encode(union)
  else
    lines = '[]'
  end
  if tonumber(v[4]) and tonumber(v[4]) > tonumber(deadline) then deadline = v[4] end
end
redis.call('HSET', KEYS[1], 'rel', lines, 'rdl', deadline)
return record(KEYS[1], 'ok')
