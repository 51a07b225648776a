"""Integration tests use the same private-sluice launcher as the benchmarks."""

from workers.cli.local import LocalSluice as Sluice

__all__ = ["Sluice"]
