-- Renew: while the claim is still this owner's, push its lease and store its checkpoint. A claim that vanished
-- with no checkpoint left (Redis restarted empty) is taken back; one released or taken by another is lost.
-- KEYS[1] run:{sid}   KEYS[2] leases   KEYS[3] ckpt:{run_id}
-- ARGV[1] claim value   ARGV[2] lease member   ARGV[3] lease expiry (ms)   ARGV[4] checkpoint JSON
-- ARGV[5] checkpoint ttl (ms)
-- Returns 1 if the lease is kept, 0 if the run was lost to another process.
local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] then
  if v or redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5])
return 1
