"""``sluice bench ingest``: the whole pipeline against bare sentence-transformers, one run.

Self-contained: a private Redis, real workers and a temporary data directory
are started and removed. Figures are ratios measured side by side, because a
2-core machine is too noisy for absolute numbers to mean much.
"""

from __future__ import annotations

import json
import os
import tempfile
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from workers.launcher.local import LocalSluice
from workers.runtime.state import State
from workers.runtime.telemetry import stage_cpu


def write_beir_corpus(beir: Path, folder: Path, limit: int | None) -> int:
    """One text file per corpus record: the title as first line, then the text."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    with (beir / "corpus.jsonl").open() as f:
        for line in f:
            if limit is not None and n >= limit:
                break
            rec = json.loads(line)
            body = (rec.get("title", "").strip() + "\n\n" + rec.get("text", "").strip()).strip()
            (folder / f"{rec['_id']}.txt").write_text(body + "\n")
            n += 1
    return n


@contextmanager
def beir_sluice(
    beir: Path, limit: int | None = None, **overrides: str
) -> Iterator[tuple[LocalSluice, Path, int, State]]:
    """A private sluice with its workers up and a BEIR corpus written as files, removed afterwards.

    It never touches a configured Qdrant server: QDRANT_URL is put aside while it runs.
    """
    from workers import client
    from workers.runtime.config import settings

    server = os.environ.pop("QDRANT_URL", None)
    try:
        with tempfile.TemporaryDirectory(prefix="sluice-beir-") as tmp:
            root = Path(tmp)
            documents = write_beir_corpus(beir, root / "corpus", limit)
            bounds = {"max_in_flight": "512", "max_queue_depth": "1024", **overrides}
            local = LocalSluice(root, persist=False, restart=False, **bounds)
            try:
                local.start_workers()
                yield local, root / "corpus", documents, client.connect(settings())
            finally:
                local.close()
    finally:
        if server is not None:
            os.environ["QDRANT_URL"] = server


class RssPeak:
    """Peak summed RSS of a set of process trees, sampled in the background.

    Cheap on purpose: it shares the cores it measures. Finding a tree's children
    reads every process on the machine, so the trees are walked every 2 s and
    only their members' RSS is read every 0.25 s.
    """

    def __init__(self, pids: list[int]) -> None:
        self.roots = [psutil.Process(p) for p in pids]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _members(self) -> list[psutil.Process]:
        members = []
        for root in self.roots:
            try:
                members += _tree(root)
            except psutil.Error:
                continue
        return members

    def _run(self) -> None:
        members, walked = self._members(), time.monotonic()
        while not self._stop.wait(0.25):
            if time.monotonic() - walked > 2:
                members, walked = self._members(), time.monotonic()
            total = 0
            for p in members:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)

    def cpu_s(self) -> float:
        """The sampler's own CPU so far: it runs in the bench's process, whose CPU counts as the client's."""
        assert self._thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))

    def __enter__(self) -> "RssPeak":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def raw_embed_rate(texts: list[str]) -> tuple[float, float]:
    """Chunks per second of plain SentenceTransformer.encode, batch 64, torch, this process,
    and the CPU seconds it took (all its threads)."""
    from sentence_transformers import SentenceTransformer

    from pipelines.embed import model_path

    model = SentenceTransformer(model_path(), device="cpu")
    model.encode(texts[:64], batch_size=64)  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - started), time.process_time() - cpu


def cpu_seconds(trees: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each process and its descendants (a worker and its pool children)."""
    return {name: sum(sum(p.cpu_times()[:2]) for p in _tree(psutil.Process(pid))) for name, pid in trees.items()}


def _tree(root: psutil.Process) -> list[psutil.Process]:
    """A process and all its descendants (a worker and its pool children)."""
    return [root, *root.children(recursive=True)]


def warm_up(local: LocalSluice, st: State, documents: int = 8) -> None:
    """Load every worker process's models before the clock starts, as the raw figure's warm-up encode does.

    Workers load spaCy, Presidio and the embedder on their first task; a few
    documents of our own (outside the corpus) go through every stage first.
    """
    folder = local.root / "warm-up"
    folder.mkdir()
    for i in range(documents):
        (folder / f"warm-up-{i}.txt").write_text(f"Warm-up note {i}\n\nThe Riverside Water Board met on Tuesday.\n")
    _ingest_all(st, folder)


def _ingest_all(st: State, folder: Path) -> tuple[Any, float]:
    """Ingest a folder and wait until nothing is in flight: the graph and summary follow-ups of
    the last documents run after their events are done, and their time counts too."""
    from workers import client
    from workers.runtime.config import settings

    started = time.monotonic()
    report = client.ingest(st, settings(), client.events_for([folder], settings()), wait=True)
    settle(st)
    return report, time.monotonic() - started


def settle(st: State) -> None:
    """Wait until nothing is in flight: the follow-ups (graph, summary) of finished events included."""
    while st.in_flight():
        time.sleep(0.05)


class NothingIndexed(RuntimeError):
    """The first ingest left no chunk of the corpus in the index: there is nothing to time per chunk."""


def check_indexed(documents: int, chunks: int, failed: list[dict[str, str]]) -> None:
    """Refuse figures per chunk when the ingest indexed none, and say why.

    Every figure of ``bench ingest`` is per chunk or against the bare encode of the indexed chunks; with
    none (an empty corpus, or every document failed, e.g. a stage broken in the working tree) they were
    divisions by zero. The failures are told by stage and error, never by key or text."""
    if chunks:
        return
    if not documents:
        raise NothingIndexed("the corpus holds no document (corpus.jsonl empty, or --limit 0): nothing to ingest")
    if not failed:
        raise NothingIndexed(f"none of the {documents} documents failed, yet the index holds no chunk of them")
    stages = ", ".join(f"{stage}: {n}" for stage, n in Counter(f.get("stage") or "?" for f in failed).most_common())
    error = Counter(f.get("error") or "?" for f in failed).most_common(1)[0][0]
    raise NothingIndexed(f"the ingest indexed no chunk: {len(failed)} of {documents} documents failed ({stages}); "
                         f"most often: {error[:200]}")


def bench_ingest(beir: Path, limit: int | None = None, followups: bool = True) -> dict[str, Any]:
    from workers import client
    from workers.runtime.config import settings
    from workers.sources.folder import folder_source

    with beir_sluice(beir, limit, followups=str(followups).lower()) as (local, folder, documents, st):
        warm_up(local, st)
        trees = {"pipeline_worker": local.procs["pipeline"].pid, "query_worker": local.procs["query"].pid}
        assert local.redis.proc is not None
        trees["redis"] = local.redis.proc.pid
        with RssPeak([p.pid for p in local.procs.values()]) as rss:
            before, client_before, stages_before = cpu_seconds(trees), time.process_time() - rss.cpu_s(), stage_cpu(st.r)
            first, first_s = _ingest_all(st, folder)
            after = cpu_seconds(trees) | {"client": time.process_time() - rss.cpu_s() - client_before}
            stages = {k: v - stages_before.get(k, 0.0) for k, v in stage_cpu(st.r).items()}
            again, again_s = _ingest_all(st, folder)
        texts = client.ask("texts", (folder_source(folder),), 300)
    check_indexed(documents, len(texts), first.failed)
    raw, raw_cpu = raw_embed_rate(texts)
    chunks_per_s = len(texts) / first_s
    cpu = {name: round(after[name] - before.get(name, 0.0), 1) for name in after}
    cpu_ms_per_chunk = 1000 * sum(cpu.values()) / len(texts)
    return {
        "followups": followups,
        "embed_backend": settings().embed_backend,  # the workers inherit it: SLUICE_EMBED_BACKEND
        "documents": documents,
        "chunks": len(texts),
        "failed": len(first.failed),
        "elapsed_s": round(first_s, 2),
        "docs_per_s": round(documents / first_s, 2),
        "chunks_per_s": round(chunks_per_s, 2),
        "raw_embed_chunks_per_s": round(raw, 2),
        "pipeline_to_raw_ratio": round(chunks_per_s / raw, 3),
        "cpu_s": cpu,
        "cpu_ms_per_chunk": round(cpu_ms_per_chunk, 1),
        "raw_cpu_ms_per_chunk": round(1000 * raw_cpu / len(texts), 1),
        "pipeline_to_raw_cpu_ratio": round(1000 * raw_cpu / len(texts) / cpu_ms_per_chunk, 3),
        # each stage's own thread CPU: where the time goes (the rest is Celery, Redis and hand-offs)
        "stage_cpu_ms_per_chunk": {k: round(1000 * v / len(texts), 2) for k, v in sorted(stages.items()) if v > 0},
        "stage_cpu_ms_per_document": {k: round(1000 * v / documents, 2) for k, v in sorted(stages.items()) if v > 0},
        "reingest_elapsed_s": round(again_s, 3),
        "reingest_chunks_embedded": again.chunks_embedded,
        "reingest_to_first_ratio": round(again_s / first_s, 4),
        "peak_rss_mb": round(rss.peak / 2**20),
    }


def with_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several ``bench ingest`` runs and the median of each ratio: one run on a noisy machine says little."""
    keys = ("pipeline_to_raw_ratio", "pipeline_to_raw_cpu_ratio", "chunks_per_s", "raw_embed_chunks_per_s")
    return {"runs": runs, "median": {k: statistics.median(r[k] for r in runs) for k in keys}}


def synthetic_texts(n: int, seed: int = 7) -> list[str]:
    """Deterministic pseudo-English chunks (~25 words) over a 5,000-word vocabulary."""
    import random

    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ren", "tu", "sa", "vor", "el", "dan", "qui", "pe", "ros", "tha", "gil", "mun", "ek"]
    vocab = sorted({"".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(6000)})[:5000]
    weights = [1 / (i + 1) for i in range(len(vocab))]  # Zipf-like, as in real text
    return [" ".join(rng.choices(vocab, weights, k=25)).capitalize() + "." for _ in range(n)]


def build_query_index(path: Path, n: int) -> None:
    """An Edge shard of n chunks with real vectors and BM25, HNSW built; reused when present."""
    from pipelines.embed import Embedder
    from pipelines.index import EdgeIndex, IndexPoint
    from pipelines.lexical import Bm25Encoder
    from workers.runtime.config import settings

    if (path / ".complete").exists():
        return
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    embedder = Embedder(batch_size=64, backend=settings().embed_backend)  # the query worker's, so one space
    index, bm25 = EdgeIndex(path), Bm25Encoder()
    texts = synthetic_texts(n)
    now = "2026-01-01T00:00:00+00:00"
    for start in range(0, n, 2048):
        batch = texts[start : start + 2048]
        vectors = embedder.embed(batch)
        index.upsert(
            [
                IndexPoint(
                    f"doc{(start + i) // 4}", f"h{start + i}", v, bm25.document(t),
                    {"doc_id": f"doc{(start + i) // 4}", "chunk_hash": f"h{start + i}", "position": (start + i) % 4,
                     "text": t, "source": "bench", "key": f"d/{(start + i) // 4}.txt", "tenant": f"t{i % 4}",
                     "file_type": "txt", "created_at": now, "updated_at": now, "prefixes": ["d/"]},
                )
                for i, (t, v) in enumerate(zip(batch, vectors))
            ]
        )
    index.shard.optimize()
    index.close()
    (path / ".complete").write_text(str(n))


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))], 2)


def bench_query(chunks: int = 100_000, queries: int = 200, cache: Path = Path(".sluice")) -> dict[str, Any]:
    import random
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from pipelines.embed import vector_space
    from schemas.search import Mode, SearchRequest
    from workers import client
    from workers.launcher.embedded_redis import free_port
    from workers.launcher.local import LocalSluice
    from workers.runtime.config import settings

    root = (cache / f"bench-query-{chunks}-{vector_space(settings().embed_backend)}").resolve()
    build_query_index(root / "data" / "qdrant-edge", chunks)
    rng = random.Random(1)
    texts = synthetic_texts(chunks)
    asks = [" ".join(rng.sample(rng.choice(texts).rstrip(".").split(), 4)) for _ in range(queries)]
    local = LocalSluice(root)
    port = free_port()
    try:
        local.start_workers(concurrency=1)
        local.start("api", "api", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        st = client.connect(settings())
        http = httpx.Client(base_url=base, timeout=30)
        for _ in range(100):
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)

        def direct(q: str, mode: Mode = Mode.hybrid, **kw: Any) -> float:
            t = time.perf_counter()
            client.search(SearchRequest(q=q, mode=mode, k=10, **kw))
            return (time.perf_counter() - t) * 1e3

        def via_api(q: str) -> float:
            t = time.perf_counter()
            http.get("/search", params={"q": q, "k": 10}).raise_for_status()
            return (time.perf_counter() - t) * 1e3

        for q in asks[:20]:  # warm-up: model, caches
            direct(q)
            via_api(q)
        timing = {
            "hybrid": [direct(q) for q in asks],
            "dense": [direct(q, Mode.dense) for q in asks],
            "lexical": [direct(q, Mode.lexical) for q in asks],
            "filtered": [direct(q, tenant="t1", prefix="d/") for q in asks],
            "api": [via_api(q) for q in asks],
        }
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            done = sum(1 for _ in pool.map(via_api, asks * 2))
        qps = done / (time.perf_counter() - started)
        freshness = _freshness(local.root, st, 10)
    finally:
        local.close()
    return {
        "chunks": chunks,
        "embed_backend": settings().embed_backend,
        "hybrid_p50_ms": _percentile(timing["hybrid"], 50),
        "hybrid_p95_ms": _percentile(timing["hybrid"], 95),
        "dense_p95_ms": _percentile(timing["dense"], 95),
        "lexical_p95_ms": _percentile(timing["lexical"], 95),
        "filtered_hybrid_p95_ms": _percentile(timing["filtered"], 95),
        "api_p95_ms": _percentile(timing["api"], 95),
        "api_overhead_p95_ms": round(_percentile(timing["api"], 95) - _percentile(timing["hybrid"], 95), 2),
        "freshness_p95_ms": _percentile(freshness, 95),
        "qps_at_concurrency_8": round(qps, 1),
    }


def _freshness(root: Path, st: Any, n: int) -> list[float]:
    """Milliseconds from an upsert finishing (event done) to the chunk being found by search."""
    import uuid

    from schemas.search import Mode, SearchRequest
    from workers import client
    from workers.runtime.config import settings

    folder = root / "fresh"
    folder.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        token = f"fresh{uuid.uuid4().hex[:10]}"
        (folder / f"{token}.txt").write_text(f"Freshness probe {i} carries the marker {token}.")
        events = client.events_for([folder / f"{token}.txt"], settings())
        eid, _ = client.Ingress(st, settings()).submit(events[0])
        while st.event_info(eid).get("status") != "done":
            time.sleep(0.002)
        finished = float(st.event_info(eid)["finished_at"])
        while not client.search(SearchRequest(q=token, mode=Mode.lexical, k=1)):
            time.sleep(0.002)
        out.append((time.time() - finished) * 1e3)
    return out


def bench_burst(files: int = 5000, bound: int = 64) -> dict[str, Any]:
    """A burst of small files through the real pipeline, sampling every queue's depth.

    Shows that admission control holds: no queue and no in-flight count ever
    passes its bound, however large the burst, and nothing is lost.
    """
    from workers import client
    from workers.launcher.local import LocalSluice
    from workers.runtime.config import settings
    from workers.runtime.flow import ALL_QUEUES

    with tempfile.TemporaryDirectory(prefix="sluice-burst-") as tmp:
        root = Path(tmp)
        folder = root / "burst"
        folder.mkdir()
        for i in range(files):
            (folder / f"note-{i:05}.txt").write_text(f"Field note {i}: a wren was seen at feeder {i % 97}.\n")
        local = LocalSluice(root, max_in_flight=str(bound), max_queue_depth=str(bound))
        peak = {"in_flight": 0, **{q: 0 for q in ALL_QUEUES}}
        stop = threading.Event()
        try:
            local.start_workers()
            st = client.connect(settings())

            def sample() -> None:
                while not stop.is_set():
                    in_flight, depths = st.occupancy(ALL_QUEUES)  # one snapshot, as admission sees it
                    for name, n in {"in_flight": in_flight, **depths}.items():
                        peak[name] = max(peak[name], n)
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            report = client.ingest(st, settings(), client.events_for([folder], settings()), wait=True)
        finally:
            stop.set()
            local.close()
    return {
        "files": files,
        "bound": bound,
        "indexed": report.indexed,
        "failed": len(report.failed),
        "peak_in_flight": peak.pop("in_flight"),
        "peak_queue_depth": peak,
        "within_bound": max(peak.values()) <= bound,
        "elapsed_s": report.elapsed_s,
    }
