"""The embedded Redis keeps its data and its port across restarts."""

from __future__ import annotations

import redis

from workers.embedded_redis import EmbeddedRedis


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
