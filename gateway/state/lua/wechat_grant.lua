-- KEYS: [1] the member's WeChat grants (hash: template id -> count left), [2] the tenant's audit stream
-- ARGV: [1] template id, [2] grants to add, [3] the most one member may hold for one template,
--       [4] member (keyed hash of the openid), [5] the masked openid, [6] the wechat_grant event
-- Records grants the member accepted in the mini program, with their audit event. Returns the new
-- balance, or -1 (nothing changed, nothing audited) when it would pass the maximum.
local left = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
local after = math.max(left, 0) + tonumber(ARGV[2])
if after > tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], after)
redis.call('XADD', KEYS[2], '*', 'n', '', 'm', ARGV[4], 'a', ARGV[5], 'c', 'wechat', 'e', ARGV[6])
return after
