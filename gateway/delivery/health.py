"""Provider health in Redis: circuit breakers and rate limits every worker shares.

They run as Lua scripts on a provider's own keys and read the time from Redis (``TIME``), so
workers on different machines agree on it.
"""

from __future__ import annotations

import itertools
import secrets

import redis as syncredis
import redis.asyncio as aioredis

from channels.routing import Admission, Provider
from gateway import metrics
from gateway.state import keys

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

# KEYS: breaker.  ARGV: cooldown.  -> {'closed' | 'probe' | 'open', seconds until a probe may go}
ADMIT = (
    _NOW
    + """
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
if st == 'closed' then return {'closed', '0'} end
local until_ = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if now < until_ then return {'open', string.format('%.3f', until_ - now)} end
-- Cool-down over: one probe at a time; a probe that never reports frees its place after a cool-down.
local probe = tonumber(redis.call('HGET', KEYS[1], 'probe') or '0')
if probe > now then return {'open', string.format('%.3f', probe - now)} end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe', string.format('%.6f', now + tonumber(ARGV[1])))
return {'probe', '0'}
"""
)

# KEYS: breaker.  ARGV: ok, failed, threshold, cooldown.  -> state after
REPORT = (
    _NOW
    + """
local ok, failed = tonumber(ARGV[1]), tonumber(ARGV[2])
if ok > 0 then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'probe', 0)
  return 'closed'
end
if failed == 0 then return redis.call('HGET', KEYS[1], 'state') or 'closed' end
local f = redis.call('HINCRBY', KEYS[1], 'failures', failed)
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
if st == 'half_open' or f >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', string.format('%.6f', now + tonumber(ARGV[4])), 'probe', 0)
  return 'open'
end
return st
"""
)

# KEYS: rate.  ARGV: interval, n, max_wait.  GCRA: sends are spaced by interval. Returns the wait
# until the last of the n slots it reserved, or, when that would exceed max_wait, reserves nothing
# and returns {'full', seconds until there is room}.
RESERVE = (
    _NOW
    + """
local interval, n, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat + interval * (n - 1) - now
if wait > max_wait then return {'full', string.format('%.6f', wait - max_wait)} end
local after = tat + interval * n
redis.call('SET', KEYS[1], string.format('%.6f', after), 'PX', math.ceil((after - now) * 1000) + 1000)
return {'ok', string.format('%.6f', wait)}
"""
)

# KEYS: sent, rate.  ARGV: window, limit, n, interval, max_wait, member prefix.  The hard cap, at the
# moment of sending: RESERVE spaced the planned times, but sleepers that wake late together would
# bunch. ``sent`` logs the sends of the last window (unique members scored by the time they went).
# When those and these n stay within limit (or the window is empty: a batch bigger than the limit
# goes alone), records n sends now and returns {'ok', '0'}. Else records nothing and takes the next
# slot of RESERVE's plan from when the window has room, so late senders are spaced again rather
# than all woken when the oldest send leaves (and the plan counts their sends where they now fall):
# returns {'wait', seconds until that slot}, or {'full', seconds until there is room} when the
# slot is more than max_wait away (nothing taken then).
GATE = (
    _NOW
    + """
local window, limit, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local interval, max_wait = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now - window))
local count = redis.call('ZCARD', KEYS[1])
if count == 0 or count + n <= limit then
  local at = string.format('%.6f', now)
  for i = 1, n do redis.call('ZADD', KEYS[1], at, ARGV[6] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
  return {'ok', '0'}
end
local leave = math.min(count, count + n - limit)
local oldest = redis.call('ZRANGE', KEYS[1], leave - 1, leave - 1, 'WITHSCORES')
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = math.max(tonumber(oldest[2]) + window, tat + interval * (n - 1), now + 0.001)
if slot - now > max_wait then return {'full', string.format('%.6f', slot - now - max_wait)} end
local after = slot + interval
redis.call('SET', KEYS[2], string.format('%.6f', after), 'PX', math.ceil((after - now) * 1000) + 1000)
return {'wait', string.format('%.6f', slot - now)}
"""
)


class RedisHealth:
    """The ``Health`` of channels.routing, in Redis."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._admit = redis.register_script(ADMIT)
        self._report = redis.register_script(REPORT)
        self._reserve = redis.register_script(RESERVE)
        self._gate = redis.register_script(GATE)
        # Members of the send log: unique across workers and calls.
        self._sender = secrets.token_hex(6)
        self._calls = itertools.count()

    async def admit(self, provider: Provider) -> tuple[Admission, float]:
        """closed / probe / open, and for open the seconds until a probe may go."""
        raw = await self._admit(keys=[keys.provider_breaker(provider.name)], args=[provider.breaker_cooldown])
        state, wait = (v.decode() if isinstance(v, bytes) else str(v) for v in raw)
        if state == "probe":
            return "probe", 0.0
        return ("open", float(wait)) if state == "open" else ("closed", 0.0)

    async def report(self, provider: Provider, ok: int, failed: int) -> str:
        """Successes close the circuit; enough consecutive failures (or a failed probe) open it."""
        raw = await self._report(
            keys=[keys.provider_breaker(provider.name)],
            args=[ok, failed, provider.breaker_failures, provider.breaker_cooldown],
        )
        state = raw.decode() if isinstance(raw, bytes) else str(raw)
        return state

    async def reserve(self, provider: Provider, n: int, max_wait: float) -> tuple[bool, float]:
        """(True, seconds to wait before sending n messages), or (False, seconds until there is room)
        when the wait would exceed max_wait (nothing reserved then)."""
        interval = provider.send_interval
        if interval is None or n <= 0:
            return True, 0.0
        raw = await self._reserve(
            keys=[keys.provider_rate(provider.name)], args=[repr(interval), n, repr(max_wait)]
        )
        verdict, seconds = (v.decode() if isinstance(v, bytes) else str(v) for v in raw)
        wait = max(0.0, float(seconds))
        if verdict == "ok" and wait:
            metrics.RATE_WAIT_SECONDS.labels(provider.name).inc(wait)
        return verdict == "ok", wait

    async def gate(self, provider: Provider, n: int, max_wait: float) -> tuple[bool, float]:
        """Just before sending n messages: (True, 0.0) when they may go now (counted as sent then);
        (True, seconds) when the window is full: a later slot is taken, wait and ask again; (False,
        seconds until there is room) when that slot would be more than max_wait away. An unlimited
        provider is not asked about (no round trip)."""
        window, interval = provider.send_window, provider.send_interval
        if window is None or interval is None or n <= 0:
            return True, 0.0
        seconds, limit = window
        raw = await self._gate(
            keys=[keys.provider_sent(provider.name), keys.provider_rate(provider.name)],
            args=[
                repr(seconds),
                limit,
                n,
                repr(interval),
                repr(max_wait),
                f"{self._sender}:{next(self._calls)}",
            ],
        )
        verdict, wait = (v.decode() if isinstance(v, bytes) else str(v) for v in raw)
        if verdict == "ok":
            return True, 0.0
        if verdict == "wait":
            metrics.RATE_WAIT_SECONDS.labels(provider.name).inc(float(wait))
        return verdict == "wait", max(0.001, float(wait))


def close_circuits(redis: syncredis.Redis) -> int:
    """Forget every provider's circuit state (an operator says the cause is fixed); how many were kept."""
    found = list(redis.scan_iter(match=f"{keys.PREFIX}provider:*:breaker", count=500))
    if found:
        redis.delete(*found)
    return len(found)
