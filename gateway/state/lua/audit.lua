-- Shared by every script that adds to a notification's timeline: the same events go to the tenant's
-- audit stream in the same script, so an event is in the stream exactly when its change happened.
-- Entry fields: n notification id, m member (keyed hash of the address), a masked address, c channel,
-- e the events (JSON, one per line), and k the campaign's funnel dimensions when the notification
-- belongs to a campaign. stream and key both come from the caller's KEYS.
-- audit_entry takes the notification's fields as read by a script's own HMGET, whose first five are
-- AUDIT_FIELDS (one read for the script's checks and the entry); audit reads them itself.
local AUDIT_FIELDS = {'id', 'member', 'masked', 'channel', 'cmp'}
local function audit_entry(stream, f, evs)
  if f[5] then
    redis.call('XADD', stream, '*', 'n', f[1] or '', 'm', f[2] or '', 'a', f[3] or '', 'c', f[4] or '', 'e', evs,
      'k', f[5])
  else
    redis.call('XADD', stream, '*', 'n', f[1] or '', 'm', f[2] or '', 'a', f[3] or '', 'c', f[4] or '', 'e', evs)
  end
end
local function audit(stream, key, evs)
  audit_entry(stream, redis.call('HMGET', key, unpack(AUDIT_FIELDS)), evs)
end
