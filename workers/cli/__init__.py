"""The ``sluice`` command line and what it launches: the supervisor of ``sluice up``, the embedded
Redis, Flower, and the private sluice that tests and benchmarks start (local.py)."""

from workers.cli.main import app

__all__ = ["app"]
