-- KEYS: [1] optouts, [2] audit, [3] pending (as in optout_add.lua).  ARGV: [1] scope, [2] member,
-- [3] masked, [4] event, [5] the address (field p, as in optout_add.lua).
-- An opt-back-in and its audit event; an acknowledgement the opt-out still awaited goes with it.
local optouts, stream, pending = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HDEL', optouts, ARGV[1]) == 0 then return 0 end
redis.call('HDEL', pending, ARGV[1])
redis.call('XADD', stream, '*', 'n', '', 'm', ARGV[2], 'a', ARGV[3], 'c', '', 'e', ARGV[4], 'p', ARGV[5])
return 1
