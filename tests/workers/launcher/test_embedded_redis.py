"""The embedded Redis keeps its data, its port and a password across restarts."""

from __future__ import annotations

import socket
import stat

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from workers.launcher.embedded_redis import EmbeddedRedis


def test_a_restart_on_the_same_data_dir_keeps_the_port_and_the_data(tmp_path):
    first = EmbeddedRedis(tmp_path / "redis").start()
    try:
        redis.Redis.from_url(first.url).set("sluice:probe", "kept")
    finally:
        first.stop()
    again = EmbeddedRedis(tmp_path / "redis").start()
    try:
        assert again.port == first.port and again.url == first.url
        assert redis.Redis.from_url(again.url).get("sluice:probe") == b"kept"
        assert (tmp_path / "redis" / "appendonly.aof").exists() or (tmp_path / "redis" / "appendonlydir").exists()
    finally:
        again.stop()


def test_a_taken_port_is_given_up_for_a_free_one(tmp_path):
    first = EmbeddedRedis(tmp_path / "a").start()
    try:
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "port").write_text(str(first.port))  # another Redis holds the remembered port
        other = EmbeddedRedis(tmp_path / "b").start()
        try:
            assert other.port != first.port and (tmp_path / "b" / "port").read_text() == str(other.port)
        finally:
            other.stop()
    finally:
        first.stop()


@pytest.mark.parametrize("persist", [True, False])
def test_only_clients_with_the_password_get_in(tmp_path, persist):
    server = EmbeddedRedis(tmp_path / "redis", persist=persist).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as anonymous:
            anonymous.sendall(b"PING\r\n")
            assert anonymous.recv(100).startswith(b"-NOAUTH"), "answered without a password"
        once = Retry(NoBackoff(), 0)  # redis-py retries a refused login with backoff by default
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=server.port, password="guess", retry=once).ping()
        assert redis.Redis.from_url(server.url).ping()
        assert server.url.startswith("redis://:") and server.url.endswith(f"@127.0.0.1:{server.port}/0")
        for name in ("password", "redis.conf"):
            mode = stat.S_IMODE((tmp_path / "redis" / name).stat().st_mode)
            assert mode == 0o600, (name, oct(mode))
        assert stat.S_IMODE((tmp_path / "redis").stat().st_mode) == 0o700  # snapshot and AOF: owner only
        assert server.password not in " ".join(server.proc.args)  # not on a command line `ps` shows
    finally:
        server.stop()
