-- Replace an experiment's JSON if it is still at the expected version (compare and set), and
-- log the change in its audit stream in the same step.
-- KEYS[1] = config key, KEYS[2] = counters hash (mab:{name}:stats), KEYS[3] = latency hash,
-- KEYS[4] = config history, KEYS[5] = audit stream, KEYS[6] = autopilot lease
-- ARGV[1] = expected version, ARGV[2] = new experiment JSON,
-- ARGV[3] = new incarnation, or "" to keep the statistics
-- ARGV[4] = history: "push" the replaced JSON (the settings changed), "keep" it as it is, or
-- "pop" its newest entry (a rollback, which writes that entry back); ARGV[5] = entries kept
-- ARGV[6] = audit entry JSON ("" for none), ARGV[7] = audit entries kept (approximately)
-- ARGV[8] = the lease token an automatic change is made under ("" for an operator's change):
-- the change is made only while that token still holds the lease
-- Returns 1 when written, 0 on a version conflict, -1 when the experiment does not exist,
-- -2 when the lease is held by another replica (or by none).
local current = redis.call('GET', KEYS[1])
if not current then
  return -1
end
if tostring(cjson.decode(current)['version']) ~= ARGV[1] then
  return 0
end
if ARGV[8] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[8] then
  return -2
end
redis.call('SET', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[2], 'incarnation', ARGV[3])
end
if ARGV[4] == 'push' then
  redis.call('LPUSH', KEYS[4], current)
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
elseif ARGV[4] == 'pop' then
  redis.call('LPOP', KEYS[4])
end
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', 'entry', ARGV[6])
end
return 1
