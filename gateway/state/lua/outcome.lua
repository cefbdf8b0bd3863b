-- KEYS: [1] ntf, [2] events, [3] lease, [4] dlq, [5] audit, [6] cap (the ntf key when it has none)
-- ARGV: [1] attempt, [2] kind (sent|retry|defer|failed|dead|suppressed), [3] now, [4] events (one per line),
--       [5] lease_score, [6] record_ttl, [7] dlq_member, field, value, ...
-- Applies a send outcome if this attempt still owns the notification. One HMGET reads what the
-- checks, the audit entry and an early receipt need.
local key = KEYS[1]
local evk = KEYS[2]
local lease = KEYS[3]
local dlq = KEYS[4]
local stream = KEYS[5]
local cap = KEYS[6]
local f = redis.call('HMGET', key, 'id', 'member', 'masked', 'channel', 'cmp', 'status', 'attempts', 'early_status',
  'early_event', 'sealed')
if f[6] ~= 'sending' or f[7] ~= ARGV[1] then return 'stale' end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'updated_at'
fields[#fields + 1] = ARGV[3]
redis.call('HSET', key, unpack(fields))
local lines = {}
for line in string.gmatch(ARGV[4], '[^\n]+') do lines[#lines + 1] = line end
if #lines > 0 then redis.call('RPUSH', evk, unpack(lines)) end
audit_entry(stream, f, ARGV[4])
local id = f[1]
local kind = ARGV[2]
if kind == 'retry' or kind == 'defer' then
  -- A deferral (quiet hours began while it waited) is not an attempt.
  if kind == 'defer' then redis.call('HINCRBY', key, 'attempts', -1) end
  redis.call('ZADD', lease, ARGV[5], id)
  return kind
end
redis.call('ZREM', lease, id)
-- The send is over: a verification's sealed code goes (the stored text holds only its placeholder).
if f[10] then redis.call('HDEL', key, 'sealed') end
if kind ~= 'sent' then give_back(key, cap) end
if kind == 'dead' then redis.call('ZADD', dlq, ARGV[3], ARGV[7]) end
if kind == 'sent' and f[8] then
  -- A receipt came before this outcome was recorded: it settles the notification now.
  redis.call('HSET', key, 'status', f[8])
  redis.call('RPUSH', evk, f[9])
  audit_entry(stream, f, f[9])
  redis.call('HDEL', key, 'early_status', 'early_event')
  kind = f[8]
end
if kind ~= 'sent' then
  redis.call('EXPIRE', key, ARGV[6])
  redis.call('EXPIRE', evk, ARGV[6])
end
return kind
