-- Add a batch of locally counted decisions, errors and latencies to an experiment, and to
-- the dashboard's current time bucket.
-- KEYS[1] = counters hash (mab:{name}:stats), KEYS[2] = latency hash, KEYS[3] = series bucket hash (optional)
-- ARGV[1] = incarnation the decisions were made in
-- ARGV[2] = unix time the series bucket expires at ("" when KEYS[3] is absent)
-- ARGV[3] = number n of stats pairs; ARGV[4 .. 3 + 2n] = stats field, increment pairs;
-- the remaining ARGV = latency field, increment pairs
-- Returns 1 when recorded, 0 when dropped (the experiment was reset or deleted since).
if redis.call('HGET', KEYS[1], 'incarnation') ~= ARGV[1] then
  return 0
end
local series = KEYS[3]
local stats_pairs = tonumber(ARGV[3])
local last_stats = 3 + 2 * stats_pairs
for i = 4, last_stats, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  if series then
    redis.call('HINCRBY', series, ARGV[i], ARGV[i + 1])
  end
end
for i = last_stats + 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  if series then
    redis.call('HINCRBY', series, 'l:' .. ARGV[i], ARGV[i + 1])
  end
end
if series then
  redis.call('EXPIREAT', series, ARGV[2])
end
return 1
