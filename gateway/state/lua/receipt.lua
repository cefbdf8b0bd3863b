-- KEYS: [1] ntf, [2] events, [3] audit.  ARGV: [1] final_status, [2] event, [3] now, [4] record_ttl,
--       field, value, ...
-- A delivery receipt: final for a sent notification (or one waiting to retry an unconfirmed attempt),
-- kept aside if it beat the send's record; ignored for one never sent. A final status comes back with
-- the notification's created_at (accept-to-receipt latency). One HMGET reads what the checks, the
-- audit entry and the answer need.
local key = KEYS[1]
local evk = KEYS[2]
local stream = KEYS[3]
local f = redis.call('HMGET', key, 'id', 'member', 'masked', 'channel', 'cmp', 'status', 'early_status', 'attempts',
  'created_at')
local st = f[6]
if not st then return 'unknown' end
if st == 'delivered' or st == 'undelivered' then return 'duplicate' end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
if st == 'sending' then
  if f[7] then return 'duplicate' end
  redis.call('HSET', key, 'early_status', ARGV[1], 'early_event', ARGV[2], unpack(fields))
  return 'early'
end
-- Sent, or waiting for a retry after an attempt we could not confirm (a time-out): the provider did
-- take it. The receipt settles it (and the retry finds nothing to send).
if st == 'sent' or ((st == 'queued' or st == 'scheduled') and tonumber(f[8] or '0') > 0) then
  redis.call('HSET', key, 'status', ARGV[1], 'updated_at', ARGV[3], unpack(fields))
  redis.call('RPUSH', evk, ARGV[2])
  audit_entry(stream, f, ARGV[2])
  redis.call('EXPIRE', key, ARGV[4])
  redis.call('EXPIRE', evk, ARGV[4])
  return {ARGV[1], f[9] or ''}
end
return 'ignored'
