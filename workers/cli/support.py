"""What every ``sluice`` sub-command needs: the running sluice, or a plain message and exit 2."""

from __future__ import annotations

import typer

from workers.client import NotRunning, connect
from workers.runtime import config
from workers.runtime.state import State


def connect_or_exit() -> State:
    try:
        return connect(config.settings())
    except NotRunning as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
