-- Read a session at one instant: the stream entries from a seq on, the active run, the last seq (starting the
-- numbering at the floor if it has none), and whether the stream was ever trimmed (entries added > entries held).
-- KEYS[1] ev:{sid}   KEYS[2] seq:{sid}   KEYS[3] run:{sid}
-- ARGV[1] first entry id (`-` or `seq-0`)   ARGV[2] floor seq   ARGV[3] seq ttl (ms)
-- Returns {entries, claim value or false, last seq, trimmed 0|1}.
redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3])
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+')
local trimmed = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local length, added = 0, 0
  for i = 1, #info, 2 do
    if info[i] == 'length' then length = info[i + 1] end
    if info[i] == 'entries-added' then added = info[i + 1] end
  end
  if added > length then trimmed = 1 end
end
return {entries, redis.call('GET', KEYS[3]), tonumber(redis.call('GET', KEYS[2])), trimmed}
