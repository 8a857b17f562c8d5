"""How many look-ups a key makes per minute.

Look-ups (``POST /v1/decisions``, ``POST /v1/tasks/next``: any route with
``opt={"lookup": True}``) count against their key, not the caller's address (a store's clerks
share one NAT), so a leaked or misused clerk key cannot walk the subscriber base. A fixed
window per minute: per process by default, in Redis when ``NEXTBEST_REDIS_URL`` is set, so
every worker and node counts against the same bound.

Not Litestar's RateLimitMiddleware: its Redis store reads a key's history and writes it back
(two round trips, and concurrent requests on two nodes overwrite each other's counts); here
one ``INCR`` counts atomically, in one round trip.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import msgspec

from nextbest.settings import Settings

__all__ = ["Limiter", "MemoryLimiter", "RedisLimiter", "Verdict", "limiter_for"]

WINDOW_SECONDS = 60


class Verdict(msgspec.Struct, frozen=True):
    allowed: bool
    limit: int
    count: int  # look-ups in this window, this one included
    reset_in: int  # seconds until the window ends

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_in)

    def headers(self) -> dict[str, str]:
        """The IETF draft's RateLimit headers, as Litestar's limiter sent them."""
        return {
            "RateLimit-Policy": f"{self.limit}; w={WINDOW_SECONDS}",
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.limit - self.count)),
            "RateLimit-Reset": str(self.reset_in),
        }


class Limiter(Protocol):
    async def hit(self, key: str) -> Verdict: ...

    async def close(self) -> None: ...


def _window(now: float) -> tuple[int, int]:
    """The current window's number and the seconds left in it."""
    window = int(now // WINDOW_SECONDS)
    return window, max(1, int((window + 1) * WINDOW_SECONDS - now))


class MemoryLimiter:
    """Counts in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._window = -1
        self._counts: dict[str, int] = {}

    async def hit(self, key: str) -> Verdict:
        window, reset_in = _window(time.time())
        with self._lock:
            if window != self._window:  # a new minute: every count starts again
                self._window = window
                self._counts = {}
            count = self._counts.get(key, 0) + 1
            if count <= self.limit:
                self._counts[key] = count
        return Verdict(count <= self.limit, self.limit, count, reset_in)

    async def close(self) -> None:
        return None


class RedisLimiter:
    """Counts in Redis, shared by every process and node on the same namespace."""

    def __init__(self, limit: int, url: str, namespace: str) -> None:
        from redis.asyncio import Redis

        self.limit = limit
        self.namespace = namespace
        self._redis: Any = Redis.from_url(url)

    async def hit(self, key: str) -> Verdict:
        window, reset_in = _window(time.time())
        name = f"{self.namespace}:rate_limit:{key}:{window}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(name)
            pipe.expire(name, WINDOW_SECONDS + 5, nx=True)
            count, _ = await pipe.execute()
        return Verdict(int(count) <= self.limit, self.limit, int(count), reset_in)

    async def close(self) -> None:
        await self._redis.aclose()


def limiter_for(settings: Settings) -> Limiter | None:
    """None when NEXTBEST_RATE_LIMIT_PER_MINUTE is 0."""
    if settings.rate_limit_per_minute == 0:
        return None
    if settings.redis_url:
        return RedisLimiter(
            settings.rate_limit_per_minute, settings.redis_url, settings.redis_namespace
        )
    return MemoryLimiter(settings.rate_limit_per_minute)
