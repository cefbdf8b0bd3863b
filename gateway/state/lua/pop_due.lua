-- KEYS: [1] held.  ARGV: [1] now, [2] limit.
-- Takes the ids whose time has come (atomic: one batcher gets each).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
return ids
