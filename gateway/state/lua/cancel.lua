-- KEYS: [1] ntf, [2] events, [3] lease, [4] audit, [5] cap (the ntf key when it has none)
-- ARGV: [1] event, [2] now, [3] record_ttl
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'unknown' end
if st ~= 'queued' and st ~= 'scheduled' then return st end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'updated_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'sealed')
redis.call('RPUSH', KEYS[2], ARGV[1])
audit(KEYS[4], KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], id)
give_back(KEYS[1], KEYS[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 'ok'
