-- Claim a session for one run: refuse if a run holds it; else record the run and its lease, and return the last
-- issued seq. A session with no seq yet starts its numbering at the clock-based floor, stored at once, so a
-- replay right after the claim (on any process) sees where the numbering stands.
-- KEYS[1] run:{sid}   KEYS[2] leases   KEYS[3] seq:{sid}
-- ARGV[1] claim value `run_id|owner`   ARGV[2] lease member `sid|run_id|owner`   ARGV[3] lease expiry (ms)
-- ARGV[4] floor seq   ARGV[5] seq ttl (ms)
-- Returns the last seq, or -1 if another run holds the session.
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PX', ARGV[5])
return tonumber(redis.call('GET', KEYS[3]))
