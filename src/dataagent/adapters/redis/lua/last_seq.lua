-- The last issued seq of a session, starting its numbering at the floor if it has none.
-- KEYS[1] seq:{sid}
-- ARGV[1] floor seq   ARGV[2] seq ttl (ms)
-- Returns the last seq.
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return tonumber(redis.call('GET', KEYS[1]))
