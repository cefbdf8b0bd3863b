-- KEYS: every quota scope of every message, in message order
-- ARGV: [1] now (ms), [2] the messages' references (JSON list), then per message: n_keys, then per
--       key: n_windows, then that many count, span (ms) pairs
-- Per message, in order (two messages to one number in one batch count one after the other): when
-- every window of each of its keys has room, it is counted in all of them (member: its reference,
-- so a later attempt of the same message moves its entry instead of adding one) and gets 0; else
-- nothing is written for it and it gets the milliseconds until its fullest window has room.
local now = tonumber(ARGV[1])
local refs = cjson.decode(ARGV[2])
local out = {}
local a, k = 3, 1
for m = 1, #refs do
  local n_keys = tonumber(ARGV[a])
  a = a + 1
  local wait = 0
  local spans = {}
  local first = k
  for j = 1, n_keys do
    local key = KEYS[k]
    k = k + 1
    local n_windows = tonumber(ARGV[a])
    a = a + 1
    spans[j] = 0
    for _ = 1, n_windows do
      local count, span = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
      a = a + 2
      if span > spans[j] then spans[j] = span end
      local used = redis.call('ZCOUNT', key, now - span + 1, '+inf')
      -- An earlier take of this same message (a worker that died before it sent) is not another one.
      local mine = tonumber(redis.call('ZSCORE', key, refs[m]) or '')
      if mine ~= nil and mine > now - span then used = used - 1 end
      if used >= count then
        local e = redis.call('ZRANGEBYSCORE', key, now - span + 1, '+inf', 'WITHSCORES', 'LIMIT', used - count, 1)
        wait = math.max(wait, tonumber(e[2]) + span - now)
      end
    end
  end
  if wait == 0 then
    for j = 1, n_keys do
      local key = KEYS[first + j - 1]
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now - spans[j])
      redis.call('ZADD', key, now, refs[m])
      redis.call('PEXPIRE', key, spans[j])
    end
  end
  out[m] = math.max(0, wait)
end
return out
