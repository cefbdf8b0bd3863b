-- KEYS: [1] series, [2] audit
-- ARGV: [1] the params the caller read, [2] the new params, [3] now, [4] event
-- Replaces an active series' params if nobody changed them since they were read. Returns 'ok',
-- 'changed' (read again and retry), or the status that prevents it ('unknown': no such series).
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'unknown' end
if st ~= 'active' then return st end
if redis.call('HGET', KEYS[1], 'params') ~= ARGV[1] then return 'changed' end
redis.call('HSET', KEYS[1], 'params', ARGV[2], 'updated_at', ARGV[3])
audit(KEYS[2], KEYS[1], ARGV[4])
return 'ok'
