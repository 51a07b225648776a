"""What an operator sees, through real workers: a dead-lettered document fails its task (Flower's
"Failed"), query traffic and ticks send no task events, and one document's ingest is one
OpenTelemetry trace (the real OTLP/HTTP exporter of every process, to a receiver in this test)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from conftest import wait_for
from harness import Sluice, cli
from schemas.search import SearchRequest

TOKEN = "zanzibarquokka"  # document text that must reach no span, no event
QUERY_TASKS = {"sluice.search", "sluice.ping", "sluice.manifest", "sluice.document", "sluice.graph_query",
               "sluice.summary_tick", "sluice.sweep", "sluice.texts", "sluice.generation", "sluice.graph_communities"}


def _value(any_value: Any) -> str:
    """An OTLP attribute's value as text, whatever its type."""
    return str(getattr(any_value, any_value.WhichOneof("value") or "string_value"))


class Spans:
    """Every span the workers exported over OTLP/HTTP, as dicts (name, ids, attributes, events)."""

    def __init__(self) -> None:
        self.found: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for s in scope.spans:
                    found = {"name": s.name, "trace": s.trace_id.hex(), "id": s.span_id.hex(),
                             "parent": s.parent_span_id.hex(), "start": s.start_time_unix_nano,
                             "attributes": {a.key: _value(a.value) for a in s.attributes},
                             "events": [(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in s.events]}
                    with self.lock:
                        self.found.append(found)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, Spans]]:
    spans = Spans()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            spans.add(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", spans
    server.shutdown()


@pytest.fixture(scope="module")
def sluice(tmp_path_factory, receiver):
    """Workers that export traces over OTLP/HTTP to ``receiver`` (the test process itself traces nothing)."""
    otel = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver[0],
            "OTEL_BSP_SCHEDULE_DELAY": "200"}
    saved = {k: os.environ.get(k) for k in otel}
    os.environ.update(otel)
    try:
        s = Sluice(tmp_path_factory.mktemp("views"))
        s.start_workers()
        yield s
        s.close()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def events(sluice) -> Iterator[list[dict[str, Any]]]:
    """Every Celery event the workers send, captured by a real event receiver from before the first ingest."""
    from workers.runtime.app import app

    seen: list[dict[str, Any]] = []
    ready = threading.Event()
    with app.connection() as conn:
        recv = app.events.Receiver(conn, handlers={"*": seen.append})

        def capture() -> None:
            ready.set()
            recv.capture(limit=None, timeout=None, wakeup=False)

        thread = threading.Thread(target=capture, daemon=True)
        thread.start()
        ready.wait()
        time.sleep(1)  # the receiver's queue is bound
        yield seen
        recv.should_stop = True
        thread.join(5)


def _ingest(folder: Path):
    from workers import client
    from workers.runtime.config import settings

    st = client.connect(settings())
    evs = client.events_for([folder], settings())
    return st, evs, client.ingest(st, settings(), evs, wait=True)


def test_dead_lettered_document_fails_its_task_once_with_the_reason(sluice, events, tmp_path):
    from workers.runtime.app import app

    folder = tmp_path / "poison"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    st, evs, report = _ingest(folder)
    assert [f["stage"] for f in report.failed] == ["parse"]
    event_id = evs[0].event_id
    failed = wait_for(lambda: [e for e in list(events) if e["type"] == "task-failed"], "a task-failed event")
    assert len(failed) == 1 and "parse" in failed[0]["exception"] and "empty" in failed[0]["exception"]
    result = app.AsyncResult(failed[0]["uuid"])
    assert result.state == "FAILURE" and "empty" in str(result.result)
    time.sleep(3)  # a retry or a redelivery would show by now
    received = [e for e in list(events) if e["type"] == "task-received" and event_id in e.get("args", "")]
    assert len(received) == 1, received
    assert [d["event_id"] for d in st.dead_letters()].count(event_id) == 1


def test_query_tasks_send_no_task_events_but_ingestion_does(sluice, events, tmp_path):
    from workers import client

    folder = tmp_path / "quiet"
    folder.mkdir()
    (folder / "herons.txt").write_text("Grey herons wait motionless at the edge of the reed bed for fish.")
    _, _, report = _ingest(folder)
    assert report.indexed == 1
    assert client.search(SearchRequest(q="grey herons reed bed"))
    time.sleep(2)  # the events of the search would have arrived
    named = {e.get("name") for e in list(events) if e["type"] == "task-received"}
    assert {"sluice.parse", "sluice.diff"} <= named  # parse -> redact -> chunk in place, then the index owner
    by_uuid = {e["uuid"]: e.get("name") for e in list(events) if e["type"] == "task-received"}
    quiet = {by_uuid.get(e["uuid"]) or e.get("name") for e in list(events) if e["type"].startswith("task-")}
    assert not (quiet & QUERY_TASKS), quiet & QUERY_TASKS
    from workers.runtime.telemetry import runs
    from workers.runtime import resources

    assert any(task == "search" for task, _ in runs(resources.state().r))  # still counted for /metrics


def test_one_document_is_one_connected_trace_without_its_text(sluice, receiver, tmp_path):
    _, spans = receiver
    folder = tmp_path / "traced"
    folder.mkdir()
    (folder / "quokka.txt").write_text(f"The {TOKEN} hops across the island at dusk. It eats leaves and grass.")
    done = cli(sluice.env, "ingest", str(folder), "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    ingress = wait_for(lambda: [s for s in list(spans.found) if s["name"] == "sluice.ingress"
                                and s["attributes"].get("sluice.outcome") == "queued"], "the ingress span",
                       context=lambda: repr(sorted({s["name"] for s in spans.found})))
    assert len(ingress) == 1
    trace = ingress[0]["trace"]
    stages = ["sluice.parse", "sluice.redact", "sluice.chunk", "sluice.diff", "sluice.embed", "sluice.upsert",
              "sluice.graph_apply"]

    def in_trace() -> list[dict[str, Any]]:
        found = [s for s in list(spans.found) if s["trace"] == trace]
        return found if set(stages) <= {s["name"] for s in found} else []

    found = wait_for(in_trace, "every stage's span in the event's trace", timeout_s=60)
    ids = {s["id"] for s in found}
    assert all(s["parent"] in ids for s in found if s is not ingress[0]), "one connected trace"
    first = {name: min(s["start"] for s in found if s["name"] == name) for name in stages}
    assert sorted(stages, key=first.get) == stages
    event_id = ingress[0]["attributes"]["sluice.event_id"]
    assert all(s["attributes"].get("sluice.event_id") == event_id for s in found if s["name"] in stages)
    assert {s["attributes"].get("sluice.doc_id") for s in found if s["name"] in stages} == {
        ingress[0]["attributes"]["sluice.doc_id"]}
    everything = repr([(s["name"], s["attributes"], s["events"]) for s in spans.found])
    assert TOKEN not in everything and "island" not in everything


def test_a_search_is_one_trace_from_the_asking_process_to_the_index(sluice, receiver, tmp_path):
    _, spans = receiver
    asked = cli(sluice.env, "search", "grey herons reed bed", cwd=tmp_path)
    assert asked.returncode == 0, asked.stdout + asked.stderr

    def search_trace() -> list[dict[str, Any]]:
        for index in [s for s in list(spans.found) if s["name"] == "sluice.index.search"]:
            found = [s for s in list(spans.found) if s["trace"] == index["trace"]]
            if {"send sluice.search", "sluice.search"} <= {s["name"] for s in found}:
                return found
        return []

    found = wait_for(search_trace, "the asking process's, the query worker's and the index's spans in one trace")
    by_name = {s["name"]: s for s in found}
    assert by_name["sluice.index.search"]["parent"] == by_name["sluice.search"]["id"]
    assert by_name["sluice.search"]["parent"] == by_name["send sluice.search"]["id"]
    assert "herons" not in repr([s["attributes"] for s in found])
