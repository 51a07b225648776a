"""Settings plus where the running sluice's Redis is (env, or the file ``sluice up`` wrote)."""

from __future__ import annotations

from functools import lru_cache

from schemas.settings import Settings

REDIS_URL_FILE = "redis.url"


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
