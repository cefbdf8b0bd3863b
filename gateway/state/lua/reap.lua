-- KEYS: [1] lease.  ARGV: [1] now, [2] new_score, [3] limit.
-- Takes notifications whose lease ran out (the housekeeper).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
