-- KEYS: [1] idem.  ARGV: [1] pending_record, [2] ttl.  Reserve a key for a long request (batch).
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
