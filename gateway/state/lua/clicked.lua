-- KEYS: [1] ntf, [2] events, [3] audit
-- ARGV: [1] the click event if it is the message's first, [2] the event otherwise, [3] now
-- A counted click on one of a notification's links: its timeline event, and whether it was the
-- message's first (a message counts as clicked once, however many times and links). Returns 1 for
-- the first click, 0 for a later one, -1 when the notification has expired.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local first = redis.call('HSETNX', KEYS[1], 'clicked_at', ARGV[3])
local ev = ARGV[2]
if first == 1 then ev = ARGV[1] end
redis.call('RPUSH', KEYS[2], ev)
audit(KEYS[3], KEYS[1], ev)
return first
