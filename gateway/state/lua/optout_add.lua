-- KEYS: [1] optouts, [2] audit.  ARGV: [1] scope, [2] entry, [3] member, [4] masked, [5] event,
-- [6] the address (field p: read by the webhook outbox, for endpoints that receive addresses;
-- the audit store never keeps it).
-- An opt-out and its audit event.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'n', '', 'm', ARGV[3], 'a', ARGV[4], 'c', '', 'e', ARGV[5], 'p', ARGV[6])
return 1
