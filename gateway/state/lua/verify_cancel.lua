-- KEYS: [1] the number-and-brand log, [2] the number block's log, [3] the tenant's log, [4] the
--       member's verification for the purpose, [5] the id's index, [6] audit, [7] the verification it
--       replaced, put aside by verify_start
-- ARGV: [1] verification id, [2] the cancelled event, [3] member, [4] masked, [5] channel
-- Withdraws a verification whose message could not go (rejected, suppressed, or the accept failed):
-- its code no longer counts against the limits and can never be approved, and the code it replaced
-- (still valid until its own expiry) is current again.
for g = 1, 3 do redis.call('ZREM', KEYS[g], ARGV[1]) end
if redis.call('HGET', KEYS[4], 'id') == ARGV[1] then
  redis.call('DEL', KEYS[4])
  if redis.call('EXISTS', KEYS[7]) == 1 then redis.call('RENAME', KEYS[7], KEYS[4]) end
end
redis.call('DEL', KEYS[5])
redis.call('XADD', KEYS[6], '*', 'n', '', 'm', ARGV[3], 'a', ARGV[4], 'c', ARGV[5], 'e', ARGV[2])
return 1
