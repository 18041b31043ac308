"""Per-key request rates: a token bucket per key, refilled continuously. Pure (time is an
argument). Each gateway replica counts its own requests, so N replicas allow up to N times
the rate in all."""

from __future__ import annotations

from dataclasses import dataclass

from siesta.gateway.auth import Rate


@dataclass
class Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self) -> None:
        self._buckets: dict[str, Bucket] = {}

    def take(self, key: str, rate: Rate, now: float) -> float:
        """Take one request's token; 0 if there was one, else the seconds until there is."""
        per_second = rate.count / rate.seconds
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(float(rate.count), now)
        bucket.tokens = min(float(rate.count), bucket.tokens + (now - bucket.at) * per_second)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / per_second
