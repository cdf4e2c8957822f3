-- Add a batch of locally counted decisions, errors and latencies to an experiment, and to
-- the dashboard's current time bucket, once: a batch sent again after a lost reply is skipped.
-- KEYS[1] = counters hash (mab:{name}:stats), KEYS[2] = latency hash,
-- KEYS[3] = the sending replica's flush sequence (mab:{name}:flushed:<replica>),
-- KEYS[4] = series bucket hash (optional)
-- ARGV[1] = incarnation the decisions were made in
-- ARGV[2] = unix time the series bucket expires at ("" when KEYS[4] is absent)
-- ARGV[3] = the batch's sequence number (increasing per replica), ARGV[4] = seconds KEYS[3] is kept
-- ARGV[5] = number n of stats pairs; ARGV[6 .. 5 + 2n] = stats field, increment pairs;
-- the remaining ARGV = latency field, increment pairs
-- Returns 1 when recorded, 2 when this batch was recorded before, 0 when dropped (the
-- experiment was reset or deleted since).
if redis.call('HGET', KEYS[1], 'incarnation') ~= ARGV[1] then
  return 0
end
local sequence = tonumber(ARGV[3])
if tonumber(redis.call('GET', KEYS[3]) or '0') >= sequence then
  return 2
end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
local series = KEYS[4]
local stats_pairs = tonumber(ARGV[5])
local last_stats = 5 + 2 * stats_pairs
for i = 6, last_stats, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  -- Expected decisions (x:) serve the sample-ratio check over the whole run: not in the history.
  if series and string.sub(ARGV[i], 1, 2) ~= 'x:' then
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
