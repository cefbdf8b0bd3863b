-- KEYS: [1] lease, [2] audit, then four per notification: ntf, events, optouts, cap
--       (optouts and cap are the notification's own key when it has none)
-- ARGV: [1] now, [2] lease_until, [3] record_ttl, [4] reasons, [5] compliance event, [6] suppressed event
--       (what an opt-out since accept says, decided in Python), then per notification: id, n_scopes, scope...
-- Claims each notification that is due and not held by a live lease, after the dispatch-time opt-out
-- test (the member may have replied TD since accept). Returns per notification:
--   {id, attempt, {field, value, ...}}  claimed
--   {id, -1, {'not_before', t}}        not due yet
--   {id, -2, {}}                        suppressed now: opted out since accept (cap slot given back)
local now = tonumber(ARGV[1])
local out = {}
local a = 7
for k = 3, #KEYS, 4 do
  local key, ev, okey, cap = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local id = ARGV[a]
  local n_scopes = tonumber(ARGV[a + 1])
  local first_scope = a + 2
  a = a + 2 + n_scopes
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
    if n_scopes > 0 then
      for _, v in ipairs(redis.call('HMGET', okey, unpack(ARGV, first_scope, first_scope + n_scopes - 1))) do
        if v then opted = true break end
      end
    end
    if opted then
      redis.call('HSET', key, 'status', 'suppressed', 'error_code', 'opted_out', 'updated_at', ARGV[1],
        'reasons', ARGV[4])
      give_back(key, cap)
      redis.call('RPUSH', ev, ARGV[5], ARGV[6])
      audit(KEYS[2], key, ARGV[5] .. '\n' .. ARGV[6])
      redis.call('ZREM', KEYS[1], id)
      redis.call('EXPIRE', key, ARGV[3])
      redis.call('EXPIRE', ev, ARGV[3])
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
