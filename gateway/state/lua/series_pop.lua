-- KEYS: [1] due steps, [2] steps being released
-- ARGV: [1] now, [2] most to take, [3] until when they are this caller's (then another may take them)
-- Takes the due steps (first any a crashed releaser left behind) into the caller's hands.
local now, limit = ARGV[1], tonumber(ARGV[2])
local taken = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
if #taken < limit then
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit - #taken)) do
    taken[#taken + 1] = m
  end
end
for _, m in ipairs(taken) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('ZADD', KEYS[2], ARGV[3], m)
end
return taken
