-- KEYS: [1] series, [2] the caller's key -> series id (the series key itself when no key was given),
--       [3] the member's active series, [4] due steps, [5] audit
-- ARGV: [1] id, [2] ttl (seconds: a while past the anchor), [3] started event, [4] n (field count),
--       then n field/value pairs, then score/member pairs of the pending steps
-- Starts one series, or answers the one the same key already started. Returns {'new', id} or
-- {'dup', id of the existing series}.
if KEYS[2] ~= KEYS[1] then
  local have = redis.call('GET', KEYS[2])
  if have then return {'dup', have} end
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
local n = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + 2 * n))
redis.call('EXPIRE', KEYS[1], ARGV[2])
for i = 5 + 2 * n, #ARGV, 2 do
  redis.call('ZADD', KEYS[4], ARGV[i], ARGV[i + 1])
end
redis.call('SADD', KEYS[3], ARGV[1])
if redis.call('TTL', KEYS[3]) < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[3], ARGV[2]) end
audit(KEYS[5], KEYS[1], ARGV[3])
return {'new', ARGV[1]}
