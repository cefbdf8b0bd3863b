-- KEYS: [1] ntf, [2] events, [3] audit.  ARGV: [1] event.
-- Adds an event to a notification's timeline (and the audit stream).
redis.call('RPUSH', KEYS[2], ARGV[1])
audit(KEYS[3], KEYS[1], ARGV[1])
return 1
