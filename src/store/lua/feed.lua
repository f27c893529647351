-- Feed snapshots, deltas and expected receipts for the skus of one slot, in order.
-- KEYS: per sku, its level hash, its holds hash and its expected receipts hash; then the log.
-- Each applied snapshot or delta is reported as a stock event.
-- ARGV: per update seven values: sku number n (keys 3n-2 to 3n), node, sequence, kind (s|d|i),
-- value (on hand, the change with its sign, or the units expected), safety stock ('' to keep;
-- for a receipt its day, YYYY-MM-DD), reorder point ('' to keep, '-' to remove; for a receipt
-- its reference). A receipt of 0 units removes the one of that reference.
-- Returns per update: 1 applied, 0 stale, {'below', on hand} or {'above', on hand} for a delta
-- that would take on hand below zero or above the limit, {'bad'} for a figure out of bounds
-- (the caller checks those first), or {'corrupt', stored text} for a delta on a level that
-- cannot be read. A snapshot of such a level repairs it: a sequence that can still be read
-- keeps older snapshots out as ever; one that cannot is replaced by the snapshot's.
-- What an update of a level that must read answers before it applies: {'bad'} for a figure
-- out of bounds, {'corrupt', stored} for a level that cannot be read, 0 for a stale sequence;
-- nil when it applies.
local function refused(ok, seq, bad, l)
  if not ok or not sequence(seq) then return {'bad'} end
  if bad then return {'corrupt', bad} end
  if l and not seq_gt(seq, l.sq) then return 0 end
  return nil
end
local out = {}
for i = 1, #ARGV, 7 do
  local n = tonumber(ARGV[i])
  local lv, ho, inb = KEYS[3 * n - 2], KEYS[3 * n - 1], KEYS[3 * n]
  local node, seq, kind, value, safety = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local reorder = ARGV[i + 6]
  local l, bad, partial = level_read(lv, node)
  if kind == 's' then
    local oh, ss = units(value), nil
    if safety ~= '' then ss = units(safety) end
    local rp_ok = reorder == '' or reorder == '-' or units(reorder)
    if not oh or (safety ~= '' and not ss) or not rp_ok or not sequence(seq) then
      out[#out + 1] = {'bad'}
    elseif bad and partial.sq and not seq_gt(seq, partial.sq) then
      out[#out + 1] = 0
    elseif bad then
      level_repair(lv, ho, node, oh, ss, reorder, seq, partial)
      emit_level(lv, node)
      out[#out + 1] = 1
    elseif l and not seq_gt(seq, l.sq) then
      out[#out + 1] = 0
    else
      l = l or level_new()
      l.oh = oh
      if ss then l.ss = ss end
      l.rp = reorder_apply(reorder, l.rp)
      l.sq = seq
      level_put(lv, node, l)
      emit_level(lv, node)
      out[#out + 1] = 1
    end
  elseif kind == 'i' then
    local u = units(value)
    local no = refused(u and string.match(safety, '^%d%d%d%d%-%d%d%-%d%d$'), seq, bad, l)
    if no ~= nil then
      out[#out + 1] = no
    else
      l = l or level_new()
      l.sq = seq
      level_put(lv, node, l)
      local field = node .. '\n' .. reorder
      if u == 0 then
        redis.call('HDEL', inb, field)
      else
        redis.call('HSET', inb, field, safety .. ',' .. fmt(u))
      end
      out[#out + 1] = 1
    end
  else
    local sign, digits = string.match(value, '^(-?)(%d+)$')
    local change = units(digits)
    local no = refused(change, seq, bad, l)
    if no ~= nil then
      out[#out + 1] = no
    else
      l = l or level_new()
      local oh = l.oh + change
      if sign == '-' then oh = l.oh - change end
      if oh < 0 then
        out[#out + 1] = {'below', fmt(l.oh)}
      elseif oh > MAX_UNITS then
        out[#out + 1] = {'above', fmt(l.oh)}
      else
        l.oh = oh
        l.sq = seq
        level_put(lv, node, l)
        emit_level(lv, node)
        out[#out + 1] = 1
      end
    end
  end
end
return out
