-- KEYS: [1] the link
-- ARGV: [1] now, [2] who: person | bot | head, [3] seconds within which a person's second click is a repeat
-- One request to a short link: its target, and whether the click counts. Raw clicks count every
-- request; HEAD requests and link-preview robots are kept apart (they get the redirect); a person
-- clicking again within the window is a repeat. Returns nil for an unknown code, else
-- {target, 'counted' | 'repeat' | 'ignored', tenant, notification, channel, campaign}.
local f = redis.call('HMGET', KEYS[1], 'u', 't', 'n', 'c', 'cmp', 'last')
if not f[1] then return nil end
redis.call('HINCRBY', KEYS[1], 'raw', 1)
if ARGV[2] ~= 'person' then
  redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
  return {f[1], 'ignored', f[2], f[3], f[4], f[5]}
end
redis.call('HSET', KEYS[1], 'last', ARGV[1])
local last = tonumber(f[6] or '')
if last and tonumber(ARGV[1]) - last < tonumber(ARGV[3]) then
  redis.call('HINCRBY', KEYS[1], 'repeats', 1)
  return {f[1], 'repeat', f[2], f[3], f[4], f[5]}
end
redis.call('HINCRBY', KEYS[1], 'counted', 1)
return {f[1], 'counted', f[2], f[3], f[4], f[5]}
