-- KEYS: [1] series, [2] steps being released, [3] the member's active series, [4] audit
-- ARGV: [1] step number, [2] status (sent | suppressed | skipped), [3] notification id, [4] reasons,
--       [5] now, [6] step event, [7] completed event, [8] the releasing entry, then the numbers of later
--       steps the same reasons end (an opt-out covering every one of them)
-- Records what a released step became. Returns 'ok', 'completed' (that was the last step), or the
-- series' status when it ended while the step was being released (exited, cancelled: the caller
-- cancels its notification; 'ended' when the series is gone).
redis.call('ZREM', KEYS[2], ARGV[8])
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'active' then return st or 'ended' end
local i = ARGV[1]
if redis.call('HGET', KEYS[1], 's' .. i) ~= 'pending' then return 'ok' end
redis.call('HSET', KEYS[1], 's' .. i, ARGV[2], 'x' .. i, ARGV[3], 'r' .. i, ARGV[4], 'updated_at', ARGV[5])
for k = 9, #ARGV do
  if redis.call('HGET', KEYS[1], 's' .. ARGV[k]) == 'pending' then
    redis.call('HSET', KEYS[1], 's' .. ARGV[k], ARGV[2], 'r' .. ARGV[k], ARGV[4])
  end
end
audit(KEYS[4], KEYS[1], ARGV[6])
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
for k = 1, n do
  if redis.call('HGET', KEYS[1], 's' .. k) == 'pending' then return 'ok' end
end
redis.call('HSET', KEYS[1], 'status', 'completed', 'ended_at', ARGV[5])
audit(KEYS[4], KEYS[1], ARGV[7])
return 'completed'
