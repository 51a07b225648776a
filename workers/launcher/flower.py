"""Flower as ``sluice up`` runs it: on loopback only, and with a password even there.

Loopback alone is not enough. Flower without authentication skips its
cross-site request checks, and with ``FLOWER_UNAUTHENTICATED_API`` it even
answers any origin (``Access-Control-Allow-Origin: *``): a web page open in
the operator's browser could read the task list and call the control API
(shut workers down, revoke tasks) on 127.0.0.1, and so could every other user
of a shared machine. So ``sluice up`` uses ``FLOWER_BASIC_AUTH`` when set and
otherwise generates a password on first start, kept in the data dir
(``flower-auth``, mode 0600) and printed with Flower's address.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

from workers.launcher.embedded_redis import private_file

USER = "sluice"
AUTH_FILE = "flower-auth"
CONF = Path(__file__).resolve().parents[2] / "flower.conf"  # beside pyproject.toml


def credentials(data_dir: Path) -> tuple[str, str]:
    """("user:password", where it came from): the environment's FLOWER_BASIC_AUTH, else the data dir's file."""
    if os.environ.get("FLOWER_BASIC_AUTH"):
        return os.environ["FLOWER_BASIC_AUTH"], "FLOWER_BASIC_AUTH"
    path = data_dir / AUTH_FILE
    login = private_file(path, lambda: f"{USER}:{secrets.token_urlsafe(18)}")  # no ',' or ':' in the password
    return login, str(path)


def command(port: int, data_dir: Path, address: str = "127.0.0.1") -> list[str]:
    """Flower with sluice's flower.conf and its persistent state in the data dir.

    The broker URL (it holds Redis's password) goes in the environment, ``broker_env``,
    never on the command line, which every local user can read with ``ps``."""
    return [sys.executable, "-m", "celery", "flower", f"--port={port}", f"--address={address}",
            f"--conf={CONF}", f"--db={data_dir / 'flower.db'}"]


def broker_env(broker_url: str) -> dict[str, str]:
    return {"CELERY_BROKER_URL": broker_url}


def run(
    address: Annotated[str, typer.Option(help="Bind address; anything but loopback needs FLOWER_BASIC_AUTH.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 5555,
) -> None:
    """Flower for this sluice's Redis (containers, other machines). Login from FLOWER_BASIC_AUTH=user:password."""
    from workers.runtime.config import redis_url, settings

    url = redis_url(settings())
    if not url:
        typer.echo("no Redis configured: set REDIS_URL", err=True)
        raise typer.Exit(2)
    data = settings().data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    argv = command(port, data, address)
    os.environ.update(broker_env(url))
    os.execv(argv[0], argv)  # Flower becomes this process: signals (docker stop, SIGTERM) reach it directly
