-- Drop: a session deleted or expired loses its stream (the replay buffer) and its watchers; its seq counter moves
-- to max(last, floor) + 1, so the next life of the id numbers from there: above, and not next to, every old seq.
-- KEYS[1] ev:{sid}   KEYS[2] seq:{sid}   KEYS[3] watch:{sid}
-- ARGV[1] floor seq   ARGV[2] seq ttl (ms)
-- Returns the counter's new value.
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last < tonumber(ARGV[1]) then redis.call('SET', KEYS[2], ARGV[1]) end
local base = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1], KEYS[3])
return base
