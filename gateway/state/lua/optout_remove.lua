-- KEYS: [1] optouts, [2] audit.  ARGV: [1] scope, [2] member, [3] masked, [4] event, [5] the address
-- (field p, as in optout_add.lua).
-- An opt-back-in and its audit event.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'n', '', 'm', ARGV[2], 'a', ARGV[3], 'c', '', 'e', ARGV[4], 'p', ARGV[5])
return 1
