-- KEYS: [1] audit stream, [2] webhook outbox, [3] the tenant's webhook endpoints, then the funnel
--       counters of each campaign the entries count in.
-- ARGV: [1] group, [2] n (entries), then n ids, then m (counter increments), then m triples: the
-- counters' position in KEYS, field, amount.
-- Stored audit entries leave the stream; those of a tenant with webhook endpoints go to its outbox in
-- the same call (read here, as one JSON object of the entry's fields: most tenants have no endpoints,
-- so the consumer sends ids only), and their campaign counters move with them, so an event reaches
-- the outbox and the funnel exactly once, whatever happens around it.
local stream = KEYS[1]
local outbox = KEYS[2]
local endpoints = KEYS[3]
local n = tonumber(ARGV[2])
if n == 0 then return 0 end
local ids = {}
for i = 1, n do ids[i] = ARGV[2 + i] end
if redis.call('EXISTS', endpoints) == 1 then
  for i = 1, n do
    local found = redis.call('XRANGE', stream, ids[i], ids[i])
    if found[1] then  -- absent: already deleted after a commit whose acknowledgement was lost
      local flat, fields = found[1][2], {}
      for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
      redis.call('XADD', outbox, '*', 'src', ids[i], 'f', cjson.encode(fields))
    end
  end
end
for i = 1, n, 1000 do  -- unpack's stack is bounded: a thousand ids per call
  local last = math.min(n, i + 999)
  redis.call('XACK', stream, ARGV[1], unpack(ids, i, last))
  redis.call('XDEL', stream, unpack(ids, i, last))
end
local at = 3 + n
local m = tonumber(ARGV[at] or '0')
for j = 0, m - 1 do
  local p = at + 1 + 3 * j
  redis.call('HINCRBY', KEYS[tonumber(ARGV[p])], ARGV[p + 1], ARGV[p + 2])
end
return n
