-- KEYS: [1] the member's verification for the purpose, [2] audit
-- ARGV: [1] now (ms), [2] verification id, [3] the code's keyed hash as read, [4] '1' when the code
--       matched it (compared in constant time in Python), [5] max attempts, the events [6] approved,
--       [7] failed attempt, [8] max attempts, [9] expired, then [10] member, [11] masked, [12] channel
-- One check, atomically: a code is single use and the wrong tries are counted exactly. Returns
-- {status, attempts}: approved, pending (a wrong code), max_attempts, expired, used (approved
-- before), superseded (a newer code replaced it) or missing.
local f = redis.call('HMGET', KEYS[1], 'id', 'hash', 'status', 'expires_ms', 'attempts')
if not f[1] then return {'missing', 0} end
if f[1] ~= ARGV[2] or f[2] ~= ARGV[3] then return {'superseded', 0} end
local attempts = tonumber(f[5]) or 0
if f[3] == 'approved' then return {'used', attempts} end
if f[3] ~= 'pending' then return {f[3], attempts} end
local function say(ev)
  redis.call('XADD', KEYS[2], '*', 'n', '', 'm', ARGV[10], 'a', ARGV[11], 'c', ARGV[12], 'e', ev)
end
if tonumber(ARGV[1]) >= tonumber(f[4]) then
  redis.call('HSET', KEYS[1], 'status', 'expired')
  say(ARGV[9])
  return {'expired', attempts}
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'approved', 'checked_ms', ARGV[1])
  say(ARGV[6])
  return {'approved', attempts}
end
attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'status', 'max_attempts')
  say(ARGV[8])
  return {'max_attempts', attempts}
end
say(ARGV[7])
return {'pending', attempts}
