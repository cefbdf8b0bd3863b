"""Lua scripts for the state changes that must be atomic (one round trip each).

Every script touches only keys of one tenant (``{tenant}`` hash tag), so they
also run on Redis Cluster.
"""

from __future__ import annotations

# Every script that adds to a notification's timeline also adds the same events to the tenant's audit
# stream, in the same script: an event is in the audit stream exactly when the state change happened.
# Entry fields: n notification id, m member (keyed hash of the address), a masked address, c channel,
# e the events (JSON, one per line).
AUDIT = """
local function audit(stream, key, evs)
  local f = redis.call('HMGET', key, 'id', 'member', 'masked', 'channel')
  redis.call('XADD', stream, '*', 'n', f[1] or '', 'm', f[2] or '', 'a', f[3] or '', 'c', f[4] or '', 'e', evs)
end
"""

# KEYS: idem, ntf, events, lease, ready, optouts, cap, held, audit
# ARGV: [1] has_idem, [2] idem_record, [3] idem_ttl, [4] id, [5] lease ('' = none), [6] ttl ('' = none),
#       [7] '1' ready now | '0' | the time it is held until, [8] cap_limit ('0' = no cap), [9] cap_ttl, [10] suppressed_ttl, [11] now (RFC 3339),
#       [12] the most held notifications of this tenant and channel, [13] n_scopes, scope..., n_events, event...,
#       field, value, ...
# Idempotency, the opt-out test and the cap reservation happen together: no race between two requests.
# Returns {'new', 'accept' | 'opted_out' | 'frequency_cap'}, {'dup', stored idempotency record}, or
# {'full', ''} when the channel's held set is at its bound (nothing written).
# Ids carry 80 random bits: the script does not check for a collision.
ACCEPT = (
    AUDIT
    + """
if ARGV[1] == '1' then
  local cur = redis.call('GET', KEYS[1])
  if cur then return {'dup', cur} end
end
if ARGV[7] ~= '1' and ARGV[7] ~= '0' and redis.call('ZCARD', KEYS[8]) >= tonumber(ARGV[12]) then
  return {'full', ''}
end
local n_scopes = tonumber(ARGV[13])
local ev_at = 14 + n_scopes
local n_events = tonumber(ARGV[ev_at])
local decision = 'accept'
if n_scopes > 0 then
  local found = redis.call('HMGET', KEYS[6], unpack(ARGV, 14, 13 + n_scopes))
  for i = 1, n_scopes do
    if found[i] then decision = 'opted_out' break end
  end
end
local cap = tonumber(ARGV[8])
if decision == 'accept' and cap > 0 then
  if tonumber(redis.call('GET', KEYS[7]) or '0') >= cap then
    decision = 'frequency_cap'
  else
    if redis.call('INCR', KEYS[7]) == 1 then redis.call('EXPIRE', KEYS[7], ARGV[9]) end
  end
end
redis.call('HSET', KEYS[2], unpack(ARGV, ev_at + 1 + n_events))
local evs = {unpack(ARGV, ev_at + 1, ev_at + n_events)}
redis.call('RPUSH', KEYS[3], unpack(evs))
if decision == 'accept' then
  audit(KEYS[9], KEYS[2], table.concat(evs, '\\n'))
  if cap > 0 then redis.call('HSET', KEYS[2], 'cap_counted', '1') end
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
  return {'new', decision}
end
local why
if decision == 'opted_out' then
  why = {code = 'opted_out', detail = 'the member opted out of messages from this brand or channel'}
else
  why = {code = 'frequency_cap', detail = 'the monthly cap of ' .. ARGV[8] .. ' messages for this member is reached'}
end
local reasons = cjson.encode({why})
redis.call('HSET', KEYS[2], 'status', 'suppressed', 'error_code', decision, 'reasons', reasons)
local rule = decision == 'opted_out' and 'opt_out' or 'frequency_cap'
evs[#evs + 1] = cjson.encode({type = 'compliance', at = ARGV[11], stage = 'accept', rule = rule, outcome = 'suppress', reason = decision})
evs[#evs + 1] = cjson.encode({type = 'suppressed', at = ARGV[11], reason = decision, detail = why.detail})
redis.call('RPUSH', KEYS[3], evs[#evs - 1], evs[#evs])
audit(KEYS[9], KEYS[2], table.concat(evs, '\\n'))
redis.call('EXPIRE', KEYS[2], ARGV[10])
redis.call('EXPIRE', KEYS[3], ARGV[10])
if ARGV[1] == '1' then
  local rec = cjson.decode(ARGV[2])
  rec.status = 200
  rec.body.status = 'suppressed'
  rec.body.scheduled_for = cjson.null
  rec.body.reasons = {why}
  redis.call('SET', KEYS[1], cjson.encode(rec), 'EX', ARGV[3])
end
return {'new', decision}
"""
)

# KEYS: idem.  ARGV: pending_record, ttl.  Reserve a key for a long request (batch).
IDEM_RESERVE = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""

# Gives a notification's monthly-cap slot back (it will never be sent). The cap key lives in the
# notification's own hash and in the same {tenant} slot.
GIVE_BACK = """
local function give_back(key)
  local ck = redis.call('HGET', key, 'cap_key')
  if ck and redis.call('HGET', key, 'cap_counted') == '1' then
    if redis.call('DECR', ck) < 0 then redis.call('SET', ck, 0, 'KEEPTTL') end
    redis.call('HSET', key, 'cap_counted', '0')
  end
end
"""

# KEYS: lease, audit, ntf1, ntf2, ...   ARGV: now, lease_until, now (RFC 3339), record_ttl, opt-out key prefix, id1, ...
# Claims each notification that is due and not held by a live lease, after the dispatch-time opt-out
# test (the member may have replied TD since accept). Returns per notification:
#   {id, attempt, {field, value, ...}}  claimed
#   {id, -1, {'not_before', t}}        not due yet
#   {id, -2, {}}                        suppressed now: opted out since accept (cap slot given back)
CLAIM = (
    GIVE_BACK
    + AUDIT
    + """
local now = tonumber(ARGV[1])
local out = {}
for i = 3, #KEYS do
  local key = KEYS[i]
  local id = ARGV[i + 3]
  local st = redis.call('HGET', key, 'status')
  local ok = false
  if st == 'queued' or st == 'scheduled' then
    local nb = tonumber(redis.call('HGET', key, 'not_before') or '0') or 0
    ok = nb <= now
    -- Not due yet (a scheduler rounding to whole seconds, clocks apart): tell the caller when.
    if not ok then out[#out + 1] = {id, -1, {'not_before', tostring(nb)}} end
  elseif st == 'sending' then
    -- The attempt's own lease lives in the hash: the reaper bumps only the zset score.
    local lease = tonumber(redis.call('HGET', key, 'lease_until') or '0') or 0
    ok = lease <= now
  end
  if ok then
    local opted = false
    local member = redis.call('HGET', key, 'member')
    if member then
      -- The member's opt-out hash (same {tenant} slot), scopes: everything, the channel, the brand.
      local okey = ARGV[5] .. member
      local channel = redis.call('HGET', key, 'channel')
      local brand = redis.call('HGET', key, 'brand') or ''
      local scopes = {'*|*', '*|' .. channel}
      if brand ~= '' then
        scopes[3] = brand .. '|*'
        scopes[4] = brand .. '|' .. channel
      end
      for _, v in ipairs(redis.call('HMGET', okey, unpack(scopes))) do
        if v then opted = true break end
      end
    end
    if opted then
      local detail = 'the member opted out after this message was accepted'
      redis.call('HSET', key, 'status', 'suppressed', 'error_code', 'opted_out', 'updated_at', ARGV[1],
        'reasons', cjson.encode({{code = 'opted_out', detail = detail}}))
      give_back(key)
      local ev = key .. ':ev'
      local e1 = cjson.encode({type = 'compliance', at = ARGV[3], stage = 'dispatch', rule = 'opt_out', outcome = 'suppress', reason = 'opted_out'})
      local e2 = cjson.encode({type = 'suppressed', at = ARGV[3], reason = 'opted_out', detail = detail})
      redis.call('RPUSH', ev, e1, e2)
      audit(KEYS[2], key, e1 .. '\\n' .. e2)
      redis.call('ZREM', KEYS[1], id)
      redis.call('EXPIRE', key, ARGV[4])
      redis.call('EXPIRE', ev, ARGV[4])
      out[#out + 1] = {id, -2, {}}
    else
      local attempt = redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('HSET', key, 'status', 'sending', 'updated_at', ARGV[1], 'lease_until', ARGV[2])
      redis.call('ZADD', KEYS[1], ARGV[2], id)
      out[#out + 1] = {id, attempt, redis.call('HGETALL', key)}
    end
  end
end
return out
"""
)

# KEYS: ntf, events, lease, dlq, audit
# ARGV: attempt, kind (sent|retry|failed|dead|suppressed), now, event, lease_score, record_ttl, dlq_member,
#       field, value, ...
# Applies a send outcome if this attempt still owns the notification.
OUTCOME = (
    GIVE_BACK
    + AUDIT
    + """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'sending' or redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[1] then return 'stale' end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
for line in string.gmatch(ARGV[4], '[^\\n]+') do redis.call('RPUSH', KEYS[2], line) end
audit(KEYS[5], KEYS[1], ARGV[4])
local id = redis.call('HGET', KEYS[1], 'id')
local kind = ARGV[2]
if kind == 'retry' or kind == 'defer' then
  -- A deferral (quiet hours began while it waited) is not an attempt.
  if kind == 'defer' then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end
  redis.call('ZADD', KEYS[3], ARGV[5], id)
  return kind
end
redis.call('ZREM', KEYS[3], id)
if kind ~= 'sent' then give_back(KEYS[1]) end
if kind == 'dead' then redis.call('ZADD', KEYS[4], ARGV[3], ARGV[7]) end
if kind == 'sent' then
  local early = redis.call('HGET', KEYS[1], 'early_status')
  if early then
    redis.call('HSET', KEYS[1], 'status', early)
    local early_event = redis.call('HGET', KEYS[1], 'early_event')
    redis.call('RPUSH', KEYS[2], early_event)
    audit(KEYS[5], KEYS[1], early_event)
    redis.call('HDEL', KEYS[1], 'early_status', 'early_event')
    kind = early
  end
end
if kind ~= 'sent' then
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
return kind
"""
)

# KEYS: ntf, events, audit.  ARGV: final_status, event, now, record_ttl, field, value, ...
# A delivery receipt: final for a sent notification (or one waiting to retry an unconfirmed attempt),
# kept aside if it beat the send's record; ignored for one never sent. A final status comes back with
# the notification's created_at (accept-to-receipt latency).
RECEIPT = (
    AUDIT
    + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'unknown' end
if st == 'delivered' or st == 'undelivered' then return 'duplicate' end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
if st == 'sending' then
  if redis.call('HEXISTS', KEYS[1], 'early_status') == 1 then return 'duplicate' end
  redis.call('HSET', KEYS[1], 'early_status', ARGV[1], 'early_event', ARGV[2], unpack(fields))
  return 'early'
end
-- Sent, or waiting for a retry after an attempt we could not confirm (a time-out): the provider did
-- take it. The receipt settles it (and the retry finds nothing to send).
if st == 'sent' or ((st == 'queued' or st == 'scheduled') and tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') > 0) then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at', ARGV[3], unpack(fields))
  redis.call('RPUSH', KEYS[2], ARGV[2])
  audit(KEYS[3], KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  return {ARGV[1], redis.call('HGET', KEYS[1], 'created_at') or ''}
end
return 'ignored'
"""
)

# KEYS: ntf, events, lease, audit.  ARGV: event, now, record_ttl
CANCEL = (
    GIVE_BACK
    + AUDIT
    + """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'unknown' end
if st ~= 'queued' and st ~= 'scheduled' then return st end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'updated_at', ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[1])
audit(KEYS[4], KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], id)
give_back(KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 'ok'
"""
)

# KEYS: ntf, events, lease, dlq, audit.  ARGV: event, now, lease_score, dlq_member
# Puts a dead-lettered (failed) notification back in the queue with fresh attempts.
REPLAY = (
    AUDIT
    + """
local st = redis.call('HGET', KEYS[1], 'status')
redis.call('ZREM', KEYS[4], ARGV[4])
if st ~= 'failed' then return st or 'unknown' end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', 0, 'not_before', ARGV[2], 'updated_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'error_code', 'error_detail')
redis.call('RPUSH', KEYS[2], ARGV[1])
audit(KEYS[5], KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], id)
return 'queued'
"""
)

# KEYS: lease.  ARGV: now, new_score, limit.  Takes notifications whose lease ran out (the housekeeper).
REAP = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""

# KEYS: held.  ARGV: now, limit.  Takes the ids whose time has come (atomic: one batcher gets each).
POP_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
return ids
"""

# KEYS: ntf, events, audit.  ARGV: event.  Adds an event to a notification's timeline (and the audit stream).
APPEND_EVENT = (
    AUDIT
    + """
redis.call('RPUSH', KEYS[2], ARGV[1])
audit(KEYS[3], KEYS[1], ARGV[1])
return 1
"""
)

# KEYS: optouts, audit.  ARGV: scope, entry, member, masked, event.  An opt-out and its audit event.
OPTOUT_ADD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'n', '', 'm', ARGV[3], 'a', ARGV[4], 'c', '', 'e', ARGV[5])
return 1
"""

# KEYS: optouts, audit.  ARGV: scope, member, masked, event.  An opt-back-in and its audit event.
OPTOUT_REMOVE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'n', '', 'm', ARGV[2], 'a', ARGV[3], 'c', '', 'e', ARGV[4])
return 1
"""
