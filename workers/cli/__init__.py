"""The ``sluice`` command line: each sub-command talks to a running sluice, or starts one through
``workers.launcher``."""

from workers.cli.main import app

__all__ = ["app"]
