"""Settings plus where the running sluice's Redis is (env, or the file ``sluice up`` wrote)."""

from __future__ import annotations

from functools import lru_cache

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from schemas.settings import Settings

REDIS_URL_FILE = "redis.url"
SUPERVISOR_FILE = "supervisor.json"  # what `sluice up` keeps running and how often it restarted each


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()


def redis_url(s: Settings | None = None) -> str | None:
    """REDIS_URL when set, else the URL of the embedded Redis a running ``sluice up`` recorded."""
    s = s or settings()
    if s.redis_url:
        return s.redis_url
    marker = s.data_dir / REDIS_URL_FILE
    return marker.read_text().strip() if marker.exists() else None


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    """One try: redis-py would retry a refused login with backoff for seconds."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)).ping())
    except (redis.RedisError, OSError, ValueError):
        return False
