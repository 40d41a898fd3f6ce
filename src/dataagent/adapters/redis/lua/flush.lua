-- Flush: append a batch of events to the session's stream (entry id = the batch's last seq, trimmed by MINID)
-- and move the seq counter up to it; with KEYS[3..5], also release a claim in the same step, so that a process
-- that sees the batch (a run's `done`) finds the session free, and a claim after the release numbers on from
-- the batch: the claim value goes only if it is still this run's; its lease goes; its checkpoint is marked
-- released (an owner that was cut off must not take the session back by renewing).
-- KEYS[1] ev:{sid}   KEYS[2] seq:{sid}   [KEYS[3] run:{sid}   KEYS[4] leases   KEYS[5] ckpt:{run_id}]
-- ARGV[1] owner   ARGV[2] payload (JSON list of events, '' for none)   ARGV[3] entry id `last-0`
-- ARGV[4] MINID (oldest seq kept)   ARGV[5] stream ttl (ms)   ARGV[6] seq ttl (ms)   ARGV[7] last seq
-- [ARGV[8] claim value   ARGV[9] lease member   ARGV[10] checkpoint ttl (ms)]
-- Returns 1, or 0 if the stream had moved past the batch (or the session was dropped since): not held.
local written = 1
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[2] ~= '' then
  if tonumber(ARGV[7]) <= last and redis.call('EXISTS', KEYS[1]) == 0 then
    written = 0  -- a late batch of a dropped session (see drop.lua): never into the new life of its id
  else
    local ok = redis.pcall('XADD', KEYS[1], 'MINID', ARGV[4], ARGV[3], 'o', ARGV[1], 'e', ARGV[2])
    if type(ok) == 'table' and ok.err then written = 0 end
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
  end
end
if tonumber(ARGV[7]) > last then
  redis.call('SET', KEYS[2], ARGV[7], 'PX', ARGV[6])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
if #KEYS > 2 then
  if redis.call('GET', KEYS[3]) == ARGV[8] then redis.call('DEL', KEYS[3]) end
  redis.call('ZREM', KEYS[4], ARGV[9])
  redis.call('SET', KEYS[5], '{"released":true}', 'PX', ARGV[10])
end
return written
