"""`sluice ingest --wait` rides out a Redis blip and still reports; its failure lines cannot forge output."""

from __future__ import annotations

import redis
from typer.testing import CliRunner

from schemas.events import Action, Event
from workers.client import Report


class _Blinking:
    """A State whose Redis goes away for the first ``outage`` calls of submitting and polling."""

    def __init__(self, event: Event, outage: int) -> None:
        self.event, self.outage, self.calls = event, outage, 0

    def _maybe_down(self) -> None:
        self.calls += 1
        if self.calls <= self.outage:
            raise redis.ConnectionError("Connection refused")

    def statuses(self, ids: list[str]) -> list[str]:
        self._maybe_down()
        return ["done" for _ in ids]

    def event_info(self, event_id: str) -> dict[str, str]:
        self._maybe_down()
        return {"status": "done", "event": self.event.model_dump_json(), "chunks_embedded": "3"}


def test_ingest_wait_reconnects_after_a_redis_blip_and_still_reports(monkeypatch):
    from workers import client
    from workers.runtime import config

    event = Event(source="folder:/in", key="a.txt", action=Action.create, version="v1")
    st = _Blinking(event, outage=2)

    class Ingress:
        def __init__(self, *_: object) -> None:
            pass

        def submit(self, e: Event) -> tuple[str, str]:
            st._maybe_down()
            return e.event_id, "queued"

    monkeypatch.setattr(client, "Ingress", Ingress)
    monkeypatch.setattr(client.time, "sleep", lambda s: None)
    report = client.ingest(st, config.settings(), [event], wait=True)  # type: ignore[arg-type]
    assert (report.indexed, report.chunks_embedded, report.failed) == (1, 3, [])
    assert st.calls > 2  # the blip was met, and outlived


def test_ingest_failure_lines_show_control_characters_escaped(monkeypatch, tmp_path):
    from workers import client
    from workers.cli import main

    forged = "a.txt\n2026-12-02 INFO sluice: all documents verified\x1b[2K"
    report = Report(documents=1, failed=[{"path": forged, "stage": "parse", "error": "bad\rbytes"}])
    monkeypatch.setattr(main, "_connect", lambda: None)
    monkeypatch.setattr(client, "events_for", lambda paths, s: [])
    monkeypatch.setattr(client, "ingest", lambda *a, **k: report)
    out = CliRunner().invoke(main.app, ["ingest", str(tmp_path), "--wait"])
    assert out.exit_code == 1, out.output  # the report holds a failed document
    lines = out.output.splitlines()
    assert not any(line.startswith("2026-12-02") for line in lines), out.output  # no forged line
    assert "\x1b" not in out.output and "\r" not in out.output
    assert "  failed a.txt\\n2026-12-02 INFO sluice: all documents verified\\x1b[2K at parse: bad\\rbytes" in lines
