-- KEYS: [1] ntf, [2] events, [3] audit.  ARGV: [1] final_status, [2] event, [3] now, [4] record_ttl,
--       field, value, ...
-- A delivery receipt: final for a sent notification (or one waiting to retry an unconfirmed attempt),
-- kept aside if it beat the send's record; ignored for one never sent. A final status comes back with
-- the notification's created_at (accept-to-receipt latency).
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'unknown' end
if st == 'delivered' or st == 'undelivered' then return 'duplicate' end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
if st == 'sending' then
  if redis.call('HEXISTS', KEYS[1], 'early_status') == 1 then return 'duplicate' end
  redis.call('HSET', KEYS[1], 'early_status', ARGV[1], 'early_event', ARGV[2], unpack(fields))
  return 'early'
end
-- Sent, or waiting for a retry after an attempt we could not confirm (a time-out): the provider did
-- take it. The receipt settles it (and the retry finds nothing to send).
if st == 'sent' or ((st == 'queued' or st == 'scheduled') and tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') > 0) then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at', ARGV[3], unpack(fields))
  redis.call('RPUSH', KEYS[2], ARGV[2])
  audit(KEYS[3], KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  return {ARGV[1], redis.call('HGET', KEYS[1], 'created_at') or ''}
end
return 'ignored'
