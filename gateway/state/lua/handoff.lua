-- KEYS: [1] audit stream, [2] webhook outbox, [3] the tenant's webhook endpoints.
-- ARGV: [1] group, [2] n (entries), then n ids, then for each id its fields as one JSON object
-- (the empty string for an entry already deleted).
-- Stored audit entries leave the stream; those of a tenant with webhook endpoints go to its outbox in
-- the same call, so an event reaches the outbox exactly once, whatever happens around it.
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
return n
