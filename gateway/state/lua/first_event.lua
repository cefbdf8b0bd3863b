-- KEYS: [1] ntf, [2] events, [3] audit
-- ARGV: [1] the field that marks the first such event (clicked_at, converted_at), [2] the event if it
--       is the notification's first of its kind, [3] the event otherwise, [4] now
-- An engagement event on a notification (a counted click, a conversion): its timeline event, and
-- whether it was the first of its kind (a message counts as clicked, or converted, once). Returns 1
-- for the first, 0 for a later one, -1 when the notification has expired.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local first = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[4])
local ev = ARGV[3]
if first == 1 then ev = ARGV[2] end
redis.call('RPUSH', KEYS[2], ev)
audit(KEYS[3], KEYS[1], ev)
return first
