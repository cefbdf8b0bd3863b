-- KEYS: [1] optouts, [2] audit, [3] pending (the member's opt-outs whose acknowledgement is pending);
--       for a reply to a message, [4] ntf and [5] its events.
-- ARGV: [1] scope, [2] entry, [3] member, [4] masked, [5] the opt_out event, [6] the address (field p:
--       read by the webhook outbox, for endpoints that receive addresses; the audit store never keeps
--       it), [7] the WAIT bound (ms) this write is acknowledged within, 0 when it does not wait,
--       [8] the unsubscribed event for the message it answers ('' for none).
-- An opt-out, its audit event and the answered message's unsubscribed event, together. Returns 1 when
-- the opt-out is new, 0 when it was there already, 2 when it was there but never acknowledged: a write
-- that waits marks its scope pending until its bound runs out, and the caller clears the mark once a
-- replica acknowledged it; a mark past its bound is a write answered 503 optout_not_replicated, and
-- this one (its retry) is answered as new, as that write would have been. A mark still inside its
-- bound is a write still waiting: this one is its duplicate (0). Either way this call writes the mark
-- again, so its own WAIT covers the entry: a retry or duplicate is never acknowledged before a
-- replica holds the opt-out it found.
local optouts, stream, pending = KEYS[1], KEYS[2], KEYS[3]
local ntf, timeline = KEYS[4], KEYS[5]
local scope, bound, note = ARGV[1], tonumber(ARGV[7]), ARGV[8]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- The message the member answered: its timeline (and its campaign's funnel) says so, once an opt-out.
local function noted()
  if ntf and note ~= '' and redis.call('EXISTS', ntf) == 1 then
    redis.call('RPUSH', timeline, note)
    audit(stream, ntf, note)
    return '1'
  end
  return '0'
end

-- Pending until the bound runs out ('<ms>|<1 when a message has its unsubscribed event>'); a write
-- that does not wait is acknowledged as it is, so no mark.
local function mark(has_note)
  if bound > 0 then
    redis.call('HSET', pending, scope, (now + bound) .. '|' .. has_note)
  else
    redis.call('HDEL', pending, scope)
  end
end

if redis.call('HSETNX', optouts, scope, ARGV[2]) == 1 then
  redis.call('XADD', stream, '*', 'n', '', 'm', ARGV[3], 'a', ARGV[4], 'c', '', 'e', ARGV[5], 'p', ARGV[6])
  mark(noted())
  return 1
end
local held = redis.call('HGET', pending, scope)
if not held then return 0 end
local deadline, has_note = string.match(held, '^(%d+)|(%d)$')
if deadline and tonumber(deadline) > now then
  redis.call('HSET', pending, scope, held)
  return 0
end
if has_note ~= '1' then has_note = noted() end
mark(has_note)
return 2
