-- KEYS: [1] ntf, [2] events, [3] lease, [4] dlq, [5] audit.  ARGV: [1] event, [2] now, [3] lease_score,
--       [4] dlq_member
-- Puts a dead-lettered (failed) notification back in the queue with fresh attempts.
local st = redis.call('HGET', KEYS[1], 'status')
redis.call('ZREM', KEYS[4], ARGV[4])
if st ~= 'failed' then return st or 'unknown' end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'not_before', ARGV[2], 'updated_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'error_code', 'error_detail')
redis.call('RPUSH', KEYS[2], ARGV[1])
audit(KEYS[5], KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], id)
return 'queued'
