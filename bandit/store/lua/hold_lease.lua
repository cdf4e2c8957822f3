-- Take or keep the lease that lets one replica act on an experiment by itself.
-- KEYS[1] = the experiment's lease key
-- ARGV[1] = this replica's token, ARGV[2] = lease time in milliseconds
-- Returns 1 when the token holds the lease (taken now, or renewed), 0 when another does.
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
