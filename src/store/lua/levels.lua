-- Reads the level hashes of some skus, each as one string of NUL-separated field and value
-- pairs: one reply value per sku instead of one per field.
-- KEYS: level hashes.
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = table.concat(redis.call('HGETALL', key), '\0')
end
return out
