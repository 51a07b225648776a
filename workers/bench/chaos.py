"""``sluice bench chaos``: an ingest under random SIGKILLs, counted document by document.

A private sluice as ``sluice up`` runs it (persistent Redis, children started again when they exit,
beat with the in-flight sweep) ingests generated documents while, at random moments, a pipeline
pool child, the whole pipeline worker, the query worker or Redis is SIGKILLed (Redis is started
again after ``outage_s``, as the supervisor would). An ingest that ends before every kill is done
is followed by another round that edits every document, so all ``kills`` of each kind land on work
in progress. The figures a user checks: documents expected, indexed at their last version,
dead-lettered and lost; duplicate points (points beyond the chunks the manifest names); events left
in flight; and per kind of kill the recovery time, from the kill to the next document that finishes.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from workers.launcher.local import LocalSluice

KINDS = ("pipeline_child", "pipeline_worker", "query_worker", "redis")
SETTLE_S = 600.0  # how long the ingest and its follow-ups may take to finish after the last kill


def write_documents(folder: Path, docs: int, edition: int = 0) -> dict[str, str]:
    """The documents of one round; returns file name -> sha256 of its bytes (the version to expect)."""
    folder.mkdir(parents=True, exist_ok=True)
    versions = {}
    for i in range(docs):
        data = (f"Survey {i} of the tide pools at station {i % 37}, edition {edition}.\n\n"
                + " ".join(f"Pool {i}-{j} held {(j + edition) % 9} anemones and a crab." for j in range(40))
                + "\n").encode()
        name = f"report-{i:04}.txt"
        (folder / name).write_bytes(data)
        versions[name] = hashlib.sha256(data).hexdigest()
    return versions


def _finished(st: Any) -> int:
    from workers.client import through_outages

    names = ("done", "failed", "unchanged")
    return sum(int(v or 0) for v in through_outages(lambda: st.r.mget([f"sluice:count:{n}" for n in names])))


def _running(local: LocalSluice, name: str, timeout_s: float = 120) -> psutil.Process:
    """The child ``name`` once it runs (the keeper may be starting it again)."""
    deadline = time.monotonic() + timeout_s
    while local.procs[name].poll() is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not come back")
        time.sleep(0.2)
    return psutil.Process(local.procs[name].pid)


def kill(local: LocalSluice, kind: str, rng: random.Random, outage_s: float) -> None:
    if kind == "redis":
        local.kill_redis()
        time.sleep(outage_s)
        local.start_redis()
        return
    leader = _running(local, "query" if kind == "query_worker" else "pipeline")
    if kind == "pipeline_child":
        children = leader.children()
        if children:
            rng.choice(children).kill()
            return
    os.killpg(leader.pid, signal.SIGKILL)  # the main process and its pool, as the OOM killer of a pod would


def bench_chaos(docs: int = 200, kills: int = 20, seed: int = 0, outage_s: float = 3.0) -> dict[str, Any]:
    """``kills`` SIGKILLs of each kind during an ingest of ``docs`` generated documents."""
    server = os.environ.pop("QDRANT_URL", None)  # never a configured Qdrant server: the embedded index
    try:
        return _run(docs, kills, random.Random(seed), outage_s)
    finally:
        if server is not None:
            os.environ["QDRANT_URL"] = server


def _run(docs: int, kills: int, rng: random.Random, outage_s: float) -> dict[str, Any]:
    from workers import client
    from workers.runtime.config import settings

    with tempfile.TemporaryDirectory(prefix="sluice-chaos-") as tmp:
        root = Path(tmp)
        local = LocalSluice(root, persist=True, restart=True, stale_after_s="60", sweep_interval_s="5")
        try:
            local.start_workers()
            local.start("beat", "beat")
            st = client.connect(settings())
            plan = [kind for kind in KINDS for _ in range(kills)]
            rng.shuffle(plan)
            recovery: dict[str, list[float]] = {kind: [] for kind in KINDS}
            started = time.monotonic()
            rounds = 0
            finished = True
            while rounds == 0 or plan:
                versions = write_documents(root / "docs", docs, rounds)
                rounds += 1
                events = client.events_for([root / "docs"], settings())
                result: dict[str, Any] = {}
                ingest = threading.Thread(
                    target=lambda: result.update(r=client.ingest(st, settings(), events, True)), daemon=True)
                ingest.start()
                while plan:
                    time.sleep(rng.uniform(0.2, 2.0))
                    if not ingest.is_alive():
                        break
                    kind = plan.pop()
                    before = _finished(st)
                    kill(local, kind, rng, outage_s)
                    killed = time.monotonic()
                    while _finished(st) <= before and ingest.is_alive() and time.monotonic() - killed < SETTLE_S:
                        time.sleep(0.1)
                    recovery[kind].append(round(time.monotonic() - killed, 1))
                ingest.join(SETTLE_S)
                finished = finished and result.get("r") is not None
            deadline = time.monotonic() + SETTLE_S
            while client.through_outages(st.in_flight) and time.monotonic() < deadline:
                time.sleep(0.5)
            manifest = client.manifest(None, timeout_s=120)
            chunks = sum(int(d["chunks"]) for d in manifest.values())
            points = int(client.ask("ping", timeout_s=120)["chunks"])
            current = {doc_id for doc_id, d in manifest.items() if versions.get(Path(d["key"]).name) == d["version"]}
            letters = {d["doc_id"] for d in st.dead_letters()} - current
            return {
                "documents_expected": docs,
                "rounds": rounds,
                "indexed": len(current),
                "dead_lettered": len(letters),
                "lost": docs - len(current) - len(letters),
                "duplicate_points": points - chunks,
                "left_in_flight": st.in_flight(),
                "ingest_finished": finished,
                "kills": {kind: len(times) for kind, times in recovery.items()},
                "recovery_s": {kind: {"median": statistics.median(t), "max": max(t)} if t else None
                               for kind, t in recovery.items()},
                "elapsed_s": round(time.monotonic() - started, 1),
            }
        finally:
            local.close()
