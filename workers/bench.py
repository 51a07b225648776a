"""``sluice bench ingest``: the whole pipeline against bare sentence-transformers, one run.

Self-contained: a private Redis, real workers and a temporary data directory
are started and removed. Figures are ratios measured side by side, because a
2-core machine is too noisy for absolute numbers to mean much.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil


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


class RssPeak:
    """Peak summed RSS of a set of process trees, sampled in the background."""

    def __init__(self, pids: list[int]) -> None:
        self.roots = [psutil.Process(p) for p in pids]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            total = 0
            for root in self.roots:
                try:
                    for p in [root, *root.children(recursive=True)]:
                        total += p.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)

    def __enter__(self) -> "RssPeak":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def raw_embed_rate(texts: list[str]) -> float:
    """Chunks per second of plain SentenceTransformer.encode, batch 64, torch, this process."""
    from sentence_transformers import SentenceTransformer

    from pipelines.embed import model_path

    model = SentenceTransformer(model_path(), device="cpu")
    model.encode(texts[:64], batch_size=64)  # warm-up
    started = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - started)


def bench_ingest(beir: Path, limit: int | None = None) -> dict[str, Any]:
    from workers import client, tasks
    from workers.config import settings
    from workers.local import LocalSluice
    from workers.sources import folder_source

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        root = Path(tmp)
        folder = root / "corpus"
        documents = write_beir_corpus(beir, folder, limit)
        local = LocalSluice(root, max_in_flight="512", max_queue_depth="1024")
        try:
            local.start_workers()
            st = client.connect(settings())
            with RssPeak([p.pid for p in local.procs.values()]) as rss:
                first = client.ingest(st, settings(), client.events_for([folder], settings()), wait=True)
                again = client.ingest(st, settings(), client.events_for([folder], settings()), wait=True)
            texts = tasks.texts.apply_async((folder_source(folder),)).get(timeout=300)
        finally:
            local.close()
    raw = raw_embed_rate(texts)
    chunks_per_s = len(texts) / first.elapsed_s
    return {
        "documents": documents,
        "chunks": len(texts),
        "failed": len(first.failed),
        "elapsed_s": round(first.elapsed_s, 2),
        "docs_per_s": round(documents / first.elapsed_s, 2),
        "chunks_per_s": round(chunks_per_s, 2),
        "raw_embed_chunks_per_s": round(raw, 2),
        "pipeline_to_raw_ratio": round(chunks_per_s / raw, 3),
        "reingest_elapsed_s": round(again.elapsed_s, 3),
        "reingest_chunks_embedded": again.chunks_embedded,
        "reingest_to_first_ratio": round(again.elapsed_s / first.elapsed_s, 4),
        "peak_rss_mb": round(rss.peak / 2**20),
    }
