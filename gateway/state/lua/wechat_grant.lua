-- KEYS: [1] the member's WeChat grants (hash: template id -> count left)
-- ARGV: [1] template id, [2] grants to add, [3] the most one member may hold for one template
-- Records grants the member accepted in the mini program. Returns the new balance, or -1 (nothing
-- changed) when it would pass the maximum.
local left = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
local after = math.max(left, 0) + tonumber(ARGV[2])
if after > tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], after)
return after
