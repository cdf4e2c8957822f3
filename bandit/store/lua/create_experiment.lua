-- Create an experiment unless one of that name exists.
-- KEYS[1] = config key, KEYS[2] = counters hash (mab:{name}:stats), KEYS[3] = latency hash
-- ARGV[1] = experiment JSON, ARGV[2] = incarnation
-- Returns 1 when created, 0 when the name is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[2], 'incarnation', ARGV[2])
return 1
