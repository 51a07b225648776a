"""Poison input through real workers: a .docx of ~30 KB whose document.xml expands to millions of
elements (under the archive's declared-size limits) took a worker past 8 GB, and a worker killed for
it was delivered the message again without end. Now its parse runs in a child bounded at
``parse_memory_mib`` above its worker: the document is dead-lettered with a reason and no process
of the pipeline worker goes past the bound. And a document that kills its worker anyway (here: killed
by hand, as the out-of-memory killer would) is dead-lettered after ``max_deliveries`` deaths."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

from conftest import wait_for
from harness import Sluice, cli, searchable

BOUND_MIB = 256
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType='
    '"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)


def poison_docx(xml_mib: int) -> bytes:
    """A valid .docx whose document.xml is ``xml_mib`` MiB of empty paragraphs (~20x that in lxml's tree)."""
    body = b"<w:p/>" * (xml_mib * 1024 * 1024 // 6)
    xml = f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{W}"><w:body>'.encode() + body
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        archive.writestr("_rels/.rels", RELS)
        archive.writestr("word/document.xml", xml + b"</w:body></w:document>")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sluice(tmp_path_factory):
    # A parse limit under the unbounded parse's ~240 s, so the test also ends (failing) without the bound.
    s = Sluice(tmp_path_factory.mktemp("poison"), parse_memory_mib=str(BOUND_MIB), parse_time_limit_s="60")
    try:
        s.start_workers()
        yield s
    finally:
        s.close()


@contextmanager
def peak_rss(root: psutil.Process) -> Iterator[dict[int, tuple[int, int]]]:
    """Peak resident size of ``root`` and each descendant, sampled every 20 ms: pid -> (peak, parent pid)."""
    peaks: dict[int, tuple[int, int]] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            for p in [root, *root.children(recursive=True)]:
                try:
                    rss, parent = p.memory_info().rss, p.ppid()
                except psutil.Error:
                    continue
                peaks[p.pid] = (max(rss, peaks.get(p.pid, (0, 0))[0]), parent)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peaks
    finally:
        stop.set()
        sampler.join()


def test_an_over_expanding_docx_is_dead_lettered_at_its_memory_bound(sluice):
    from workers.client import connect
    from workers.runtime.config import settings

    docs = sluice.root / "docs"
    docs.mkdir()
    poison = poison_docx(20)
    assert len(poison) < 64 * 1024  # 20 MiB of XML in a file of ~30 KB
    (docs / "poison.docx").write_bytes(poison)
    (docs / "fine.txt").write_text("The fine note about the otter holt by the weir stays searchable.")
    worker = psutil.Process(sluice.procs["pipeline"].pid)

    with peak_rss(worker) as peaks:
        result = cli(sluice.env, "ingest", str(docs), "--wait", "--json", cwd=sluice.root)
    assert result.returncode == 1, result.stdout + result.stderr  # a document of this run was dead-lettered
    report = json.loads(result.stdout)
    assert report["indexed"] == 1 and [f["path"] for f in report["failed"]] == ["poison.docx"], report

    (letter,) = connect(settings()).dead_letters()
    assert letter["stage"] == "parse" and letter["key"] == "poison.docx"
    assert letter["error"].startswith(f"needs more than {BOUND_MIB}.0 MiB to parse"), letter
    assert searchable("otter holt")

    pool = {pid for pid, (_, parent) in peaks.items() if parent == worker.pid}
    parse_children = {pid: peak for pid, (peak, parent) in peaks.items() if parent in pool}
    assert parse_children, peaks  # the parses ran in children of the pool processes
    largest_pool = max(peaks[pid][0] for pid in pool)
    for pid, peak in parse_children.items():
        assert peak < largest_pool + BOUND_MIB * 1024 * 1024, (pid, peak, largest_pool)
    print(f"peak RSS MiB: worker main {peaks[worker.pid][0] >> 20}, pool {largest_pool >> 20}, "
          f"parse children {max(parse_children.values()) >> 20}")


@pytest.fixture(scope="module")
def roomy(tmp_path_factory):
    """A bound so large that the poison parses for minutes: long enough to kill its worker by hand."""
    s = Sluice(tmp_path_factory.mktemp("roomy"), parse_memory_mib="8192", parse_time_limit_s="600")
    try:
        s.start_workers()
        yield s
    finally:
        s.close()


def _parse_child(worker: psutil.Process) -> psutil.Process | None:
    """A parse child running under one of the worker's pool processes, if any."""
    return next((child for pool in worker.children() for child in pool.children()), None)


def test_a_document_that_kills_its_worker_three_times_is_dead_lettered_not_run_again(roomy):
    from workers.client import connect
    from workers.runtime.config import settings

    docs = roomy.root / "docs"
    docs.mkdir()
    (docs / "poison.docx").write_bytes(poison_docx(20))
    worker = psutil.Process(roomy.procs["pipeline"].pid)
    ingest = threading.Thread(target=lambda: cli(roomy.env, "ingest", str(docs), "--json", cwd=roomy.root))
    ingest.start()
    killed: list[int] = []
    for _ in range(3):  # each kill: Celery's main process sees the pool process lost and requeues the message
        child = wait_for(lambda: (c := _parse_child(worker)) is not None and c.pid not in killed and c,
                         "the poison's parse to start again", timeout_s=180, context=lambda: roomy.log("pipeline")[-2000:])
        killed.append(child.pid)
        psutil.Process(child.ppid()).kill()  # the pool process; its parse child dies with it (PR_SET_PDEATHSIG)
    ingest.join(60)

    state = connect(settings())
    (letter,) = wait_for(state.dead_letters, "the dead letter", timeout_s=180, context=lambda: roomy.log("pipeline")[-2000:])
    assert (letter["stage"], letter["key"]) == ("parse", "poison.docx")
    assert letter["error"] == "crashed the worker 3 times; not run again"
    assert _parse_child(worker) is None  # not parsed a fourth time
    wait_for(lambda: state.in_flight() == 0, "nothing left in flight", timeout_s=30)
