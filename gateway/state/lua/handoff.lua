-- KEYS: [1] audit stream, [2] webhook outbox, [3] the tenant's webhook endpoints, then the funnel
--       counters of each campaign the entries count in.
-- ARGV: [1] group, [2] n (entries), then n ids, then for each id its fields as one JSON object
-- (the empty string for an entry already deleted), then m (counter increments), then m triples:
-- the counters' position in KEYS, field, amount.
-- Stored audit entries leave the stream; those of a tenant with webhook endpoints go to its outbox in
-- the same call, and their campaign counters move with them, so an event reaches the outbox and the
-- funnel exactly once, whatever happens around it.
local n = tonumber(ARGV[2])
local forward = redis.call('EXISTS', KEYS[3]) == 1
for i = 1, n do
  local id, fields = ARGV[2 + i], ARGV[2 + n + i]
  if forward and fields ~= '' then
    redis.call('XADD', KEYS[2], '*', 'src', id, 'f', fields)
  end
  redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
end
local at = 3 + 2 * n
local m = tonumber(ARGV[at] or '0')
for j = 0, m - 1 do
  local p = at + 1 + 3 * j
  redis.call('HINCRBY', KEYS[tonumber(ARGV[p])], ARGV[p + 1], ARGV[p + 2])
end
return n
