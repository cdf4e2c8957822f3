-- Read the decision fields of several history buckets of one experiment in one call: the
-- overview asks for a minute of buckets of every experiment, and one command per experiment
-- instead of one per bucket is what keeps its first call short at 1,000 experiments.
-- KEYS = history buckets of one experiment (mab:{name}:series:<incarnation>:<bucket>)
-- ARGV = the fields to read (decisions per arm)
-- Returns one array per bucket: the fields' values in ARGV order (nil where absent).
local replies = {}
for i = 1, #KEYS do
  replies[i] = redis.call('HMGET', KEYS[i], unpack(ARGV))
end
return replies
