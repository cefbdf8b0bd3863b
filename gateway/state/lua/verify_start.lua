-- KEYS: [1] the number-and-brand log, [2] the number block's log, [3] the tenant's log, [4] the
--       member's verification for the purpose, [5] the id's index, [6] audit, [7] where the one it
--       replaces waits until the new code's message is accepted
-- ARGV: [1] now (ms), [2] verification id, [3] record ttl (ms), [4] the created event, [5] member,
--       [6] masked number, [7] channel, [8] the index's value, then per log (three groups): n, then n
--       pairs of count and span (ms); then the record's field, value pairs.
-- Every limit is checked before anything is written: over any, returns the one that waits longest,
-- {log, retry_ms, count, span_ms}, and changes nothing. Else counts the code in all three logs, puts
-- the member's verification for the purpose aside in [7] (restored if the new code's message cannot
-- go, dropped once it is accepted), writes the new one, audits it and returns {0}.
local now = tonumber(ARGV[1])
local a = 9
local longest = {0, 0, 0}
local worst = nil
for g = 1, 3 do
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    local count, span = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    a = a + 2
    if span > longest[g] then longest[g] = span end
    local used = redis.call('ZCOUNT', KEYS[g], now - span + 1, '+inf')
    if used >= count then
      -- Room comes when the entry used - count + 1 places from the window's oldest leaves it.
      local e = redis.call('ZRANGEBYSCORE', KEYS[g], now - span + 1, '+inf', 'WITHSCORES', 'LIMIT', used - count, 1)
      local wait = math.max(1, tonumber(e[2]) + span - now)
      if worst == nil or wait > worst[2] then worst = {g, wait, count, span} end
    end
  end
end
if worst ~= nil then return worst end
for g = 1, 3 do
  redis.call('ZREMRANGEBYSCORE', KEYS[g], '-inf', now - longest[g])
  redis.call('ZADD', KEYS[g], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[g], longest[g])
end
redis.call('DEL', KEYS[7])
if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('RENAME', KEYS[4], KEYS[7]) end
local fields = {}
for i = a, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[4], unpack(fields))
redis.call('PEXPIRE', KEYS[4], ARGV[3])
redis.call('SET', KEYS[5], ARGV[8], 'PX', ARGV[3])
redis.call('XADD', KEYS[6], '*', 'n', '', 'm', ARGV[5], 'a', ARGV[6], 'c', ARGV[7], 'e', ARGV[4])
return {0}
