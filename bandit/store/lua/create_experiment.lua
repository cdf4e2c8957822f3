-- Create an experiment unless one of that name exists, and log it in its audit stream.
-- KEYS[1] = config key, KEYS[2] = counters hash (mab:{name}:stats), KEYS[3] = latency hash,
-- KEYS[4] = audit stream
-- ARGV[1] = experiment JSON, ARGV[2] = incarnation, ARGV[3] = audit entry JSON,
-- ARGV[4] = audit entries kept (approximately)
-- Returns 1 when created, 0 when the name is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[2], 'incarnation', ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'entry', ARGV[3])
return 1
