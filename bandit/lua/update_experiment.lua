-- Replace an experiment's JSON if it is still at the expected version (compare and set).
-- KEYS[1] = config key, KEYS[2] = stats hash, KEYS[3] = latency hash
-- ARGV[1] = expected version, ARGV[2] = new experiment JSON,
-- ARGV[3] = new incarnation, or "" to keep the statistics
-- Returns 1 when written, 0 on a version conflict, -1 when the experiment does not exist.
local current = redis.call('GET', KEYS[1])
if not current then
  return -1
end
if tostring(cjson.decode(current)['version']) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[2], 'incarnation', ARGV[3])
end
return 1
