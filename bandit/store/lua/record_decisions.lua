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
-- Age slots of conversion-mode decisions (ca:<arm>:<slot>) older than this many slots are
-- deleted: a slot is a 32nd of the feedback window (bandit/core/pending_conversions.py), so
-- these are well past it.
local AGE_SLOTS_KEPT = 40
for i = 6, last_stats, 2 do
  local field = ARGV[i]
  redis.call('HINCRBY', KEYS[1], field, ARGV[i + 1])
  local prefix = string.sub(field, 1, 3)
  -- Expected decisions (x:) serve the sample-ratio check over the whole run, age slots (ca:)
  -- the pending conversions: neither goes into the history.
  if series and string.sub(field, 1, 2) ~= 'x:' and prefix ~= 'ca:' then
    redis.call('HINCRBY', series, field, ARGV[i + 1])
  end
  if prefix == 'ca:' then
    local arm, slot = string.match(field, '^ca:(.+):(%d+)$')
    local bound = tonumber(slot) - AGE_SLOTS_KEPT
    local cleaned = tonumber(redis.call('HGET', KEYS[1], 'cc:' .. arm) or bound)
    if cleaned < bound then
      -- Slots below `cleaned` are gone already; those left lie within AGE_SLOTS_KEPT above it.
      local stale = {}
      for old = cleaned, math.min(bound - 1, cleaned + AGE_SLOTS_KEPT) do
        stale[#stale + 1] = string.format('ca:%s:%d', arm, old)
      end
      redis.call('HDEL', KEYS[1], unpack(stale))
    end
    if cleaned <= bound then
      redis.call('HSET', KEYS[1], 'cc:' .. arm, bound)
    end
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
