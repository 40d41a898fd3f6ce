-- Take a run slot of a key: its runs are the members of a sorted set scored by the expiry of their slot (ms),
-- refreshed with the run's lease; a member past its expiry (its process died) no longer counts.
-- KEYS[1] slots:{who}
-- ARGV[1] run_id   ARGV[2] now (ms)   ARGV[3] the slot's expiry (ms)   ARGV[4] the key's most runs
-- ARGV[5] the set's ttl (ms)
-- Returns {1 if taken (or already held), the number of slots held after it}.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local held = redis.call('ZCARD', KEYS[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if held >= tonumber(ARGV[4]) then return {0, held} end
  held = held + 1
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, held}
