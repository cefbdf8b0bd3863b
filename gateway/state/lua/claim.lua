-- KEYS: [1] lease, [2] audit, then five per notification: ntf, events, optouts, cap, series
--       (optouts, cap and series are the notification's own key when it has none)
-- ARGV: [1] now, [2] lease_until, [3] record_ttl, [4] reasons, [5] compliance event, [6] suppressed event
--       (what an opt-out since accept says, decided in Python), [7] reasons, [8] cancelled event (what an
--       exited series says to its step still queued), [9], [10] the same for a cancelled series, then
--       per notification: id, step (its series step number, '' when none), the series' audit event for
--       that step's cancellation ('' when none), n_scopes, scope...
-- Claims each notification that is due and not held by a live lease, after the dispatch-time checks:
-- the series it is a step of has not ended (an exit acknowledged before this claim is honoured, as
-- the series' status is read here, atomically with the claim), and the member has not opted out
-- since accept. Returns per notification:
--   {id, attempt, {field, value, ...}}  claimed
--   {id, -1, {'not_before', t}}        not due yet
--   {id, -2, {}}                        suppressed now: opted out since accept (cap slot given back)
--   {id, -3, {}}                        cancelled now: its series ended (cap slot given back)
local now = tonumber(ARGV[1])
local out = {}
local a = 11
for k = 3, #KEYS, 5 do
  local key, ev, okey, cap, skey = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local id = ARGV[a]
  local step = ARGV[a + 1]
  local step_event = ARGV[a + 2]
  local n_scopes = tonumber(ARGV[a + 3])
  local first_scope = a + 4
  a = a + 4 + n_scopes
  -- One read of the whole hash: the checks need three fields, and a claimed notification returns all.
  local flat = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  local st = h['status']
  local ok = false
  if st == 'queued' or st == 'scheduled' then
    local nb = tonumber(h['not_before'] or '0') or 0
    ok = nb <= now
    -- Not due yet (a scheduler rounding to whole seconds, clocks apart): tell the caller when.
    if not ok then out[#out + 1] = {id, -1, {'not_before', tostring(nb)}} end
  elseif st == 'sending' then
    -- The attempt's own lease lives in the hash: the reaper bumps only the zset score.
    local lease = tonumber(h['lease_until'] or '0') or 0
    ok = lease <= now
  end
  local ended, sst = false, nil
  if ok and skey ~= key then
    sst = redis.call('HGET', skey, 'status')
    ended = sst == 'exited' or sst == 'cancelled'
  end
  if ended then
    local why, said = ARGV[7], ARGV[8]
    if sst == 'cancelled' then why, said = ARGV[9], ARGV[10] end
    redis.call('HSET', key, 'status', 'cancelled', 'updated_at', ARGV[1], 'reasons', why)
    give_back(key, cap)
    redis.call('RPUSH', ev, said)
    audit(KEYS[2], key, said)
    redis.call('ZREM', KEYS[1], id)
    redis.call('EXPIRE', key, ARGV[3])
    redis.call('EXPIRE', ev, ARGV[3])
    if redis.call('HGET', skey, 's' .. step) == 'sent' then
      redis.call('HSET', skey, 's' .. step, 'cancelled', 'r' .. step, why, 'updated_at', ARGV[1])
      if step_event ~= '' then audit(KEYS[2], skey, step_event) end
    end
    out[#out + 1] = {id, -3, {}}
  elseif ok then
    local opted = false
    if n_scopes > 0 then
      for _, v in ipairs(redis.call('HMGET', okey, unpack(ARGV, first_scope, first_scope + n_scopes - 1))) do
        if v then opted = true break end
      end
    end
    if opted then
      redis.call('HSET', key, 'status', 'suppressed', 'error_code', 'opted_out', 'updated_at', ARGV[1],
        'reasons', ARGV[4])
      redis.call('HDEL', key, 'sealed')
      give_back(key, cap)
      redis.call('RPUSH', ev, ARGV[5], ARGV[6])
      audit(KEYS[2], key, ARGV[5] .. '\n' .. ARGV[6])
      redis.call('ZREM', KEYS[1], id)
      redis.call('EXPIRE', key, ARGV[3])
      redis.call('EXPIRE', ev, ARGV[3])
      out[#out + 1] = {id, -2, {}}
    else
      local attempt = (tonumber(h['attempts'] or '0') or 0) + 1
      redis.call('HSET', key, 'attempts', attempt, 'status', 'sending', 'updated_at', ARGV[1], 'lease_until', ARGV[2])
      redis.call('ZADD', KEYS[1], ARGV[2], id)
      h['attempts'], h['status'], h['updated_at'], h['lease_until'] = tostring(attempt), 'sending', ARGV[1], ARGV[2]
      local now_flat = {}
      for field, value in pairs(h) do
        now_flat[#now_flat + 1] = field
        now_flat[#now_flat + 1] = value
      end
      out[#out + 1] = {id, attempt, now_flat}
    end
  end
end
return out
