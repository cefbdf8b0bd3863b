-- Gives a notification's monthly-cap slot back (it will never be sent). The cap key is the caller's
-- (KEYS), the notification's own hash says whether a slot was taken.
local function give_back(key, cap)
  if cap ~= key and redis.call('HGET', key, 'cap_counted') == '1' then
    if redis.call('DECR', cap) < 0 then redis.call('SET', cap, 0, 'KEEPTTL') end
    redis.call('HSET', key, 'cap_counted', '0')
  end
end
