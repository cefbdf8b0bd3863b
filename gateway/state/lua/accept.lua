-- KEYS: [1] idem, [2] ntf, [3] events, [4] lease, [5] ready, [6] optouts, [7] cap, [8] held, [9] audit,
--       [10] the member's latest ids in the campaign, [11] the exclusive code's notification
--       (a key that does not apply is the notification's own key: idem, optouts, cap, campaign, code)
-- ARGV: [1] has_idem, [2] idem_record, [3] idem_ttl, [4] id, [5] lease ('' = none), [6] ttl ('' = none),
--       [7] '1' ready now | '0' | the time it is held until, [8] cap_limit ('0' = no cap), [9] cap_ttl,
--       [10] suppressed_ttl, [11] the most held notifications of this tenant and channel,
--       [12] '0', or '8' and [13..20]: what a suppression writes (most accepts suppress nothing): if
--       opted out, reasons, compliance event, suppressed event, idempotency record; if capped, the same,
--       then n_scopes, scope..., n_events, event..., field, value, ...: the record, whose first four
--       fields are id, member, masked and channel (the audit entry's; a campaign's is 'cmp')
--       (a record with a cap_key says cap_counted '1': the script takes the slot, or, suppressing
--       it, writes cap_counted '0')
-- Idempotency, the opt-out test and the cap reservation happen together: no race between two requests.
-- What a suppression says (reasons, events, the stored answer) was decided in Python; this applies it.
-- Returns {'new', 'accept' | 'opted_out' | 'frequency_cap'}, {'dup', stored idempotency record},
-- {'full', ''} when the channel's held set is at its bound, or {'need', decision} when a rule
-- suppresses it and the caller left out what that suppression writes (nothing changed in either
-- case, a cap counted over its limit given back: the caller calls again with it).
-- Ids carry 80 random bits: the script does not check for a collision.
if ARGV[1] == '1' then
  local cur = redis.call('GET', KEYS[1])
  if cur then return {'dup', cur} end
end
if ARGV[7] ~= '1' and ARGV[7] ~= '0' and redis.call('ZCARD', KEYS[8]) >= tonumber(ARGV[11]) then
  return {'full', ''}
end
local at = 13 + tonumber(ARGV[12])  -- n_scopes
local n_scopes = tonumber(ARGV[at])
local ev_at = at + 1 + n_scopes
local n_events = tonumber(ARGV[ev_at])
local rec = ev_at + 1 + n_events  -- the record's first field name
local decision = 'accept'
if n_scopes > 0 then
  local found = redis.call('HMGET', KEYS[6], unpack(ARGV, at + 1, at + n_scopes))
  for i = 1, n_scopes do
    if found[i] then decision = 'opted_out' break end
  end
end
local cap = tonumber(ARGV[8])
if decision == 'accept' and cap > 0 then
  -- Counted first (one call where most members are under the cap), given back when over it.
  local used = redis.call('INCR', KEYS[7])
  if used == 1 then redis.call('EXPIRE', KEYS[7], ARGV[9]) end
  if used > cap then
    redis.call('DECR', KEYS[7])
    decision = 'frequency_cap'
  end
end
if decision ~= 'accept' and ARGV[12] == '0' then return {'need', decision} end
local s = decision == 'opted_out' and 13 or 17
redis.call('HSET', KEYS[2], unpack(ARGV, rec))
local evs = {unpack(ARGV, ev_at + 1, ev_at + n_events)}
redis.call('RPUSH', KEYS[3], unpack(evs))
-- The audit entry from the record as given (no read of what was just written).
local entry = {ARGV[rec + 1], ARGV[rec + 3], ARGV[rec + 5], ARGV[rec + 7], nil}
for i = rec + 8, #ARGV - 1, 2 do
  if ARGV[i] == 'cmp' then entry[5] = ARGV[i + 1] break end
end
if decision == 'accept' then
  audit_entry(KEYS[9], entry, table.concat(evs, '\n'))
  if ARGV[5] ~= '' then redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4]) end
  if ARGV[7] == '1' then
    redis.call('RPUSH', KEYS[5], ARGV[4])
  elseif ARGV[7] ~= '0' then
    redis.call('ZADD', KEYS[8], ARGV[7], ARGV[4])
  end
  if ARGV[6] ~= '' then
    redis.call('EXPIRE', KEYS[2], ARGV[6])
    redis.call('EXPIRE', KEYS[3], ARGV[6])
  end
  if ARGV[1] == '1' then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
  -- What a conversion is attributed by: the member's latest messages of the campaign, the code.
  if KEYS[10] ~= KEYS[2] then
    if redis.call('LPUSH', KEYS[10], ARGV[4]) > 10 then redis.call('LTRIM', KEYS[10], 0, 9) end
    redis.call('EXPIRE', KEYS[10], ARGV[10])
  end
  if KEYS[11] ~= KEYS[2] then redis.call('SET', KEYS[11], ARGV[4], 'EX', ARGV[10]) end
  return {'new', decision}
end
redis.call('HSET', KEYS[2], 'status', 'suppressed', 'error_code', decision, 'reasons', ARGV[s], 'cap_counted', '0')
redis.call('RPUSH', KEYS[3], ARGV[s + 1], ARGV[s + 2])
evs[#evs + 1] = ARGV[s + 1]
evs[#evs + 1] = ARGV[s + 2]
audit_entry(KEYS[9], entry, table.concat(evs, '\n'))
redis.call('EXPIRE', KEYS[2], ARGV[10])
redis.call('EXPIRE', KEYS[3], ARGV[10])
if ARGV[1] == '1' then redis.call('SET', KEYS[1], ARGV[s + 3], 'EX', ARGV[3]) end
return {'new', decision}
