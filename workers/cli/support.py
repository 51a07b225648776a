"""What every ``sluice`` sub-command needs: the running sluice, or a plain message and exit 2; and
stopping on SIGTERM as on Ctrl-C."""

from __future__ import annotations

import signal

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


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_as_on_ctrl_c() -> None:
    """`kill`, systemd, `docker stop` and CI timeouts send SIGTERM, which would end the process without
    unwinding: raise KeyboardInterrupt instead, so every ``finally`` stops the private Redis, the workers
    and the temporary folder it started. SIGINT is set too: a process started in the background by a
    script inherits it ignored."""
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
