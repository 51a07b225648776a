"""The folder watcher as a user runs it: `sluice watch DIR` next to real workers.

Files are dropped, written slowly, renamed, moved and deleted in the watched
folder; the index must follow. The watcher is also stopped, the folder changed
behind its back, and started again: reconciliation catches everything up.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import wait_for
from harness import Sluice
from schemas.events import document_id
from schemas.search import Mode, SearchRequest

SETTLE_S = 0.5


@pytest.fixture(scope="module")
def sluice(tmp_path_factory):
    s = Sluice(tmp_path_factory.mktemp("watch"), settle_seconds=str(SETTLE_S))
    s.start_workers()
    yield s
    s.close()


@pytest.fixture(scope="module")
def inbox(sluice):
    folder = (sluice.root / "inbox").resolve()
    folder.mkdir()
    (folder / "archive").mkdir()
    _start_watcher(sluice, folder)
    yield folder


@pytest.fixture(scope="module")
def source(inbox):
    from workers.sources.folder import folder_source

    return folder_source(inbox)


def _start_watcher(sluice: Sluice, folder: Path, timeout_s: float = 120) -> None:
    """Start `sluice watch` and wait until it has reconciled and follows changes."""
    log = sluice.root / "watch.log"
    before = log.read_text().count("reconciled") if log.exists() else 0
    sluice.start("watch", "watch", str(folder))
    deadline = time.monotonic() + timeout_s
    while not log.exists() or log.read_text().count("reconciled") <= before:
        proc = sluice.procs["watch"]
        assert proc.poll() is None, f"sluice watch exited:\n{sluice.log('watch')[-3000:]}"
        assert time.monotonic() < deadline, f"sluice watch never reconciled:\n{sluice.log('watch')[-3000:]}"
        time.sleep(0.1)


def _hits(token: str, k: int = 20):
    from workers.client import search

    return [h for h in search(SearchRequest(q=token, mode=Mode.lexical, k=k)) if token in h.text]


def _wait(condition, what: str, timeout_s: float = 60, sluice: Sluice | None = None):  # type: ignore[no-untyped-def]
    tail = (lambda: f"watcher log:\n{sluice.log('watch')[-3000:]}") if sluice else None
    return wait_for(condition, what, timeout_s, 0.1, tail)


def _keys(token: str) -> set[str]:
    return {h.key for h in _hits(token)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state():
    from workers.client import connect
    from workers.runtime.config import settings

    return connect(settings())


def test_dropped_file_becomes_searchable(sluice, inbox, tmp_path):
    latencies = []
    for i, bird in enumerate(["terns", "plovers", "avocets", "godwits"]):
        outside = tmp_path / f"field-notes-{i}.txt"
        outside.write_text(
            f"Field notes from the estuary, day {i}.\n\n"
            f"The quillwortian{i} survey counted forty-one nesting {bird} on the northern spit."
        )
        started = time.monotonic()
        shutil.copy(outside, inbox / outside.name)
        name, token = outside.name, f"quillwortian{i}"
        _wait(lambda: name in _keys(token), f"{name} is searchable", sluice=sluice)  # noqa: B023 (called at once)
        latencies.append(time.monotonic() - started)
    cold, warm = latencies[0], sorted(latencies[1:])
    print(f"\ndrop-to-searchable latency (settle {SETTLE_S}s): first file {cold:.2f}s (workers load their models),"
          f" then {', '.join(f'{x:.2f}s' for x in warm)}")
    assert cold < 60 and warm[-1] < 15


def test_slowly_written_file_is_indexed_once_and_complete(sluice, inbox, source):
    st = _state()
    before = st.counters()
    path = inbox / "slow-report.md"
    parts = [
        "# Slow report\n\nThe first part describes the gribblefish hatchery.\n\n",
        "## Water\n\nThe second part lists the water temperatures of each tank.\n\n",
        "## Feeding\n\nThe third part covers the feeding schedule for the fry.\n\n",
        "## Closing\n\nThe final sentence mentions the zorblatt inspection on Friday.\n",
    ]
    for part in parts:
        with path.open("a") as f:
            f.write(part)
        time.sleep(SETTLE_S * 0.5)  # shorter than the settle time: the writer is not done yet
    _wait(lambda: "slow-report.md" in _keys("zorblatt"), "the last sentence is searchable", sluice=sluice)
    time.sleep(SETTLE_S * 4)  # a late second event would show up by now
    after = st.counters()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("done", "superseded", "unchanged", "failed")}
    assert delta == {"done": 1, "superseded": 0, "unchanged": 0, "failed": 0}, delta

    doc = st.document(document_id(source, "slow-report.md"))
    last = st.event(doc["last_event"])
    assert last.version == _sha(path)  # the event that was indexed saw the whole file
    assert len(_hits("gribblefish")) == 1 and _keys("gribblefish") == {"slow-report.md"}


def test_hidden_and_temporary_files_are_ignored(sluice, inbox, source):
    from workers.client import manifest

    names = [".hidden-notes.txt", "draft.txt.tmp", "letter.txt~", "download.pdf.part"]
    for name in names:
        (inbox / name).write_text(f"This file must never be indexed: plonkwhistle {name}.")
    (inbox / "control.txt").write_text("A control file about the plonkwhistle festival, written last.")
    _wait(lambda: "control.txt" in _keys("plonkwhistle"), "the control file is searchable", sluice=sluice)
    time.sleep(SETTLE_S * 4)
    assert _keys("plonkwhistle") == {"control.txt"}
    keys = {d["key"] for d in manifest(source).values()}
    assert not keys & set(names), keys
    st = _state()
    assert all(not st.find_documents(name) for name in names)


def test_rename_move_and_delete_follow_the_file(sluice, inbox, source):
    from workers.client import manifest

    def keys() -> set[str]:
        return {d["key"] for d in manifest(source).values()}

    (inbox / "minutes.txt").write_text("Minutes of the snorkelwood committee meeting held on Tuesday.")
    _wait(lambda: _keys("snorkelwood") == {"minutes.txt"}, "minutes.txt is searchable", sluice=sluice)

    os.rename(inbox / "minutes.txt", inbox / "minutes-2024.txt")
    _wait(lambda: _keys("snorkelwood") == {"minutes-2024.txt"}, "the renamed key replaces the old", sluice=sluice)
    assert "minutes.txt" not in keys() and "minutes-2024.txt" in keys()

    shutil.move(inbox / "minutes-2024.txt", inbox / "archive" / "minutes-2024.txt")
    _wait(lambda: _keys("snorkelwood") == {"archive/minutes-2024.txt"}, "the moved key replaces the old",
          sluice=sluice)
    assert "minutes-2024.txt" not in keys() and "archive/minutes-2024.txt" in keys()

    (inbox / "archive" / "minutes-2024.txt").unlink()
    _wait(lambda: not _keys("snorkelwood"), "the deleted file is gone from search", sluice=sluice)
    assert not any("minutes" in k for k in keys())


def test_folder_moved_out_is_removed_from_the_index(sluice, inbox, source, tmp_path):
    from workers.client import manifest

    project = inbox / "project-x"
    project.mkdir()
    (project / "plan.txt").write_text("The frumious plan for the north wing renovation.")
    (project / "budget.txt").write_text("The frumious budget lists the costs of the north wing.")
    _wait(lambda: _keys("frumious") == {"project-x/plan.txt", "project-x/budget.txt"}, "the folder is indexed",
          sluice=sluice)
    shutil.move(project, tmp_path / "project-x")  # out of the watched folder: its documents go
    _wait(lambda: not _keys("frumious"), "the moved-out folder's documents are gone from search", sluice=sluice)
    assert not any(k.startswith("project-x/") for k in (d["key"] for d in manifest(source).values()))


def test_changes_while_stopped_are_reconciled_on_start(sluice, inbox, source):
    from workers.client import manifest

    keep, change, remove = inbox / "keep.txt", inbox / "change.txt", inbox / "remove.txt"
    keep.write_text("The keep file talks about the wobbleton lighthouse.")
    change.write_text("The change file, first edition, about wobbleton harbour fees.")
    remove.write_text("The remove file about wobbleton ferry times.")
    _wait(lambda: {"keep.txt", "change.txt", "remove.txt"} <= _keys("wobbleton"), "three files indexed",
          sluice=sluice)

    sluice.stop("watch")
    added = inbox / "added.txt"
    added.write_text("Added while nobody watched: the wobbleton regatta results.")
    change.write_text("The change file, second edition, about wobbleton mooring permits.")
    remove.unlink()
    expected = {"keep.txt": _sha(keep), "change.txt": _sha(change), "added.txt": _sha(added)}

    _start_watcher(sluice, inbox)

    def caught_up() -> bool:
        versions = {d["key"]: d["version"] for d in manifest(source).values()}
        return all(versions.get(k) == v for k, v in expected.items()) and "remove.txt" not in versions

    _wait(caught_up, "the index matches the folder again", sluice=sluice)
    assert _keys("wobbleton") == {"keep.txt", "change.txt", "added.txt"}
    assert any("mooring permits" in h.text for h in _hits("wobbleton"))
    assert not any("harbour fees" in h.text for h in _hits("wobbleton"))
