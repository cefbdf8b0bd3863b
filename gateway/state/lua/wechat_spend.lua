-- KEYS: [1] the notification, [2] the member's WeChat grants (hash: template id -> count left)
-- ARGV: [1] the template id the message is sent with
-- Spends one one-time grant for a claimed WeChat notification, just after its claim and before any
-- send. A notification spends at most one grant however often it is claimed (a retry, a worker that
-- took over a lapsed lease): the spend is marked on the notification in the same script.
-- Returns 2 when a grant was spent now, 1 when the notification already held one, 0 when none is left.
if redis.call('HGET', KEYS[1], 'wechat_grant') == ARGV[1] then return 1 end
local left = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') or 0
if left <= 0 then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
redis.call('HSET', KEYS[1], 'wechat_grant', ARGV[1])
return 2
