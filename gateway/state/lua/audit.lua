-- Shared by every script that adds to a notification's timeline: the same events go to the tenant's
-- audit stream in the same script, so an event is in the stream exactly when its change happened.
-- Entry fields: n notification id, m member (keyed hash of the address), a masked address, c channel,
-- e the events (JSON, one per line), and k the campaign's funnel dimensions when the notification
-- belongs to a campaign. stream and key both come from the caller's KEYS.
local function audit(stream, key, evs)
  local f = redis.call('HMGET', key, 'id', 'member', 'masked', 'channel', 'cmp')
  if f[5] then
    redis.call('XADD', stream, '*', 'n', f[1] or '', 'm', f[2] or '', 'a', f[3] or '', 'c', f[4] or '', 'e', evs,
      'k', f[5])
  else
    redis.call('XADD', stream, '*', 'n', f[1] or '', 'm', f[2] or '', 'a', f[3] or '', 'c', f[4] or '', 'e', evs)
  end
end
