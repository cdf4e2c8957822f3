-- Count each decision's reward exactly once.
-- KEYS[1] = stats hash, KEYS[1 + i] = seen-marker of item i
-- ARGV[1] = incarnation the decisions were made in
-- ARGV[2 + 4(i-1) .. 5 + 4(i-1)] = item i: arm, reward, reward squared, marker expiry (unix s)
-- Returns one code per item: 1 counted, 0 duplicate, -1 stale (experiment reset since),
-- -2 experiment gone.
local current = redis.call('HGET', KEYS[1], 'incarnation')
local results = {}
local items = #KEYS - 1
for i = 1, items do
  local base = 2 + 4 * (i - 1)
  if not current then
    results[i] = -2
  elseif current ~= ARGV[1] then
    results[i] = -1
  elseif redis.call('SET', KEYS[1 + i], '1', 'NX', 'EXAT', ARGV[base + 3]) then
    local arm = ARGV[base]
    redis.call('HINCRBY', KEYS[1], 'n:' .. arm, 1)
    redis.call('HINCRBYFLOAT', KEYS[1], 's:' .. arm, ARGV[base + 1])
    redis.call('HINCRBYFLOAT', KEYS[1], 'q:' .. arm, ARGV[base + 2])
    results[i] = 1
  else
    results[i] = 0
  end
end
return results
