-- KEYS: [1] ntf, [2] events, [3] lease, [4] dlq, [5] audit, [6] cap (the ntf key when it has none)
-- ARGV: [1] attempt, [2] kind (sent|retry|defer|failed|dead|suppressed), [3] now, [4] events (one per line),
--       [5] lease_score, [6] record_ttl, [7] dlq_member, field, value, ...
-- Applies a send outcome if this attempt still owns the notification.
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'sending' or redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 'stale' end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
for line in string.gmatch(ARGV[4], '[^\n]+') do redis.call('RPUSH', KEYS[2], line) end
audit(KEYS[5], KEYS[1], ARGV[4])
local id = redis.call('HGET', KEYS[1], 'id')
local kind = ARGV[2]
if kind == 'retry' or kind == 'defer' then
  -- A deferral (quiet hours began while it waited) is not an attempt.
  if kind == 'defer' then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end
  redis.call('ZADD', KEYS[3], ARGV[5], id)
  return kind
end
redis.call('ZREM', KEYS[3], id)
-- The send is over: a verification's sealed code goes (the stored text holds only its placeholder).
redis.call('HDEL', KEYS[1], 'sealed')
if kind ~= 'sent' then give_back(KEYS[1], KEYS[6]) end
if kind == 'dead' then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[7]) end
if kind == 'sent' then
  local early = redis.call('HGET', KEYS[1], 'early_status')
  if early then
    redis.call('HSET', KEYS[1], 'status', early)
    local early_event = redis.call('HGET', KEYS[1], 'early_event')
    redis.call('RPUSH', KEYS[2], early_event)
    audit(KEYS[5], KEYS[1], early_event)
    redis.call('HDEL', KEYS[1], 'early_status', 'early_event')
    kind = early
  end
end
if kind ~= 'sent' then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
return kind
