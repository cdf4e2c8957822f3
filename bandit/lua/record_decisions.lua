-- Add a batch of locally counted decisions, errors and latencies to an experiment.
-- KEYS[1] = stats hash, KEYS[2] = latency hash
-- ARGV[1] = incarnation the decisions were made in
-- ARGV[2] = number n of stats pairs; ARGV[3 .. 2 + 2n] = stats field, increment pairs;
-- the remaining ARGV = latency field, increment pairs
-- Returns 1 when recorded, 0 when dropped (the experiment was reset or deleted since).
if redis.call('HGET', KEYS[1], 'incarnation') ~= ARGV[1] then
  return 0
end
local stats_pairs = tonumber(ARGV[2])
local last_stats = 2 + 2 * stats_pairs
for i = 3, last_stats, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
for i = last_stats + 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1
