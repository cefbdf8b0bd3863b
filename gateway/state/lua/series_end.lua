-- KEYS: [1] series, [2] the member's active series, [3] due steps, [4] lease, [5] audit, then three per
--       step that became a notification: ntf, events, cap (the ntf key when it has none)
-- ARGV: [1] new status (exited | cancelled), [2] reason code, [3] reasons, [4] now, [5] record ttl,
--       [6] the series' end event, [7] each cancelled notification's event, then per notification key
--       triple its step number
-- Ends a series: an active one, or a completed one whose last steps are not yet handed to a provider.
-- Pending steps and steps still queued or scheduled end cancelled (their notifications cancelled, cap
-- slots given back), all in this one script; a step a worker claims later finds the series ended
-- (claim.lua). Returns {outcome, cancelled step numbers...}: outcome 'ended', or the status that
-- prevents it ('unknown' when there is no such series).
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'unknown'} end
local id = redis.call('HGET', KEYS[1], 'id')
local queued = {}
local a = 8
for k = 6, #KEYS, 3 do
  local s = redis.call('HGET', KEYS[k], 'status')
  if s == 'queued' or s == 'scheduled' then queued[#queued + 1] = {k, ARGV[a]} end
  a = a + 1
end
if st ~= 'active' and not (st == 'completed' and #queued > 0) then return {st} end
local out = {'ended'}
local n = tonumber(redis.call('HGET', KEYS[1], 'n'))
for i = 1, n do
  if redis.call('HGET', KEYS[1], 's' .. i) == 'pending' then
    redis.call('HSET', KEYS[1], 's' .. i, 'cancelled', 'r' .. i, ARGV[3])
    redis.call('ZREM', KEYS[3], id .. '|' .. i)
    out[#out + 1] = i
  end
end
for _, q in ipairs(queued) do
  local key, ev, cap, step = KEYS[q[1]], KEYS[q[1] + 1], KEYS[q[1] + 2], q[2]
  redis.call('HSET', key, 'status', 'cancelled', 'updated_at', ARGV[4], 'reasons', ARGV[3])
  redis.call('RPUSH', ev, ARGV[7])
  audit(KEYS[5], key, ARGV[7])
  redis.call('ZREM', KEYS[4], redis.call('HGET', key, 'id'))
  give_back(key, cap)
  redis.call('EXPIRE', key, ARGV[5])
  redis.call('EXPIRE', ev, ARGV[5])
  redis.call('HSET', KEYS[1], 's' .. step, 'cancelled', 'r' .. step, ARGV[3])
  out[#out + 1] = tonumber(step)
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'end_reason', ARGV[2], 'ended_at', ARGV[4], 'updated_at', ARGV[4])
redis.call('SREM', KEYS[2], id)
redis.call('EXPIRE', KEYS[1], ARGV[5])
audit(KEYS[5], KEYS[1], ARGV[6])
return out
