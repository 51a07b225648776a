"""The index owner's generations (pipelines/generations.py): which index and embedder serve searches,
where every change is written, and the builds that run beside live traffic.

Only the index owner (the query worker) holds this; the other processes learn the live
generation's embedder from Redis (``keys.LIVE_BACKEND``, published at start and at every
switch), and the index owner embeds again whatever reaches it in another space.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.embed import backend_of, resolve, vector_space
from pipelines.generations import Generation, Registry, copy_documents, judged_check, self_check, started
from pipelines.records import CollectionRecord, FileRecord, Record
from pipelines.upsert import DocumentMeta, index_version
from schemas.documents import Chunk
from schemas.settings import Settings
from workers.runtime.state import keys

if TYPE_CHECKING:
    from pipelines.embed import Embedder
    from pipelines.index import Index
    from pipelines.lexical import Bm25Encoder
    from workers.runtime.state import State

log = logging.getLogger("sluice.generations")
GATE_TOLERANCE = 0.02  # a new generation may find a chunk's own text as its chunk this much less often
JUDGED_TOLERANCE = 0.01  # or score this much less nDCG@10 on the user's judged queries
PROBES = 200
BUILD_BATCH = 32  # documents copied, and their chunks embedded, per step of a build


class BuildTask:
    """A build shown in Flower as a task of its own (``sluice.generation_build``): received, started, then
    state PROGRESS with its counts as the result, then succeeded or failed. Celery task events are what
    Flower reads; the build runs in a thread of the index owner, not as a task, so it sends them itself.
    Only the generation's name and counts are sent, never a document's text or key."""

    NAME = "sluice.generation_build"

    def __init__(self, generation: Generation, hostname: str | None) -> None:
        self.generation = generation
        self.hostname = hostname or f"query@{socket.gethostname()}"
        self.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sluice-build:{generation.location}:{generation.created_at}"))
        self.started = time.monotonic()

    def _send(self, kind: str, **fields: Any) -> None:
        from workers.runtime.app import app

        try:
            with app.events.default_dispatcher(hostname=self.hostname) as events:
                events.send(kind, uuid=self.id, **fields)
        except Exception as exc:  # monitoring must never stop a build
            log.debug("build event %s not sent: %s", kind, exc)

    def begin(self) -> None:
        self._send("task-received", name=self.NAME, args=repr((self.generation.name,)), kwargs="{}", retries=0,
                   eta=None, root_id=self.id, parent_id=None)
        self._send("task-started", pid=os.getpid())

    def progress(self) -> None:
        g = self.generation
        self._send("task-progress", result=f"{g.chunks_done}/{g.chunks_total} chunks, {g.copied}/{g.documents} documents, "
                                           f"{g.embedded} embedded")

    def end(self, dropped: bool = False) -> None:
        g, runtime = self.generation, time.monotonic() - self.started
        if dropped:
            self._send("task-revoked", terminated=False, expired=False, signum=None)
        elif g.status == "failed":
            self._send("task-failed", exception=g.error, traceback="", runtime=runtime)
        else:
            self._send("task-succeeded", result=f"{g.name} {g.status}: {g.chunks_done} chunks, {g.embedded} embedded",
                       runtime=runtime)


class Generations:
    def __init__(self, config: Settings, state: State, embedder_for: Any, bm25: Bm25Encoder) -> None:
        self.config, self.state, self.embedder_for, self.bm25 = config, state, embedder_for, bm25
        self.lock = threading.RLock()  # one document at a time across the live write, the others and a build
        self._indexes: dict[str, Index] = {}
        self._client: Any = None  # on a server: one client for every generation's collection
        self._opening = threading.Lock()
        self._stop = threading.Event()
        self.record = self._record()
        registry = Registry.load(self.record)
        if registry is None:  # a new index, or one from before generations: its shard or collection is g1
            registry = self._first()
            registry.save(self.record)
        self.registry = registry
        self._follow_alias()
        self._point_alias(self.live().location)
        self._publish()
        for generation in registry.generations.values():
            if generation.status == "building":
                self._start_build(generation.name)

    # -- opening ----------------------------------------------------------------------------------------

    def _record(self) -> Record:
        if self.config.qdrant_url:
            from qdrant_client import models

            return CollectionRecord(self._server(), models, f"{self.config.collection}-generations")
        return FileRecord(self.config.data_dir / "generations.json")

    def _server(self) -> Any:
        """On a server: the one client every generation's collection, the registry and the alias go through
        (so an alias can name any of them; in local mode they live in one memory)."""
        if self._client is None:
            from pipelines.index import server_client

            key = self.config.qdrant_api_key.get_secret_value() if self.config.qdrant_api_key else None
            self._client = server_client(str(self.config.qdrant_url), key)
        return self._client

    def _open(self, location: str) -> Index:
        """One index object per location in this process (an Edge shard admits one opener)."""
        with self._opening:
            if location not in self._indexes:
                from pipelines.index import EdgeIndex, ServerIndex

                if self.config.qdrant_url:
                    self._indexes[location] = ServerIndex(self.config.qdrant_url, location, client=self._server())
                else:
                    self._indexes[location] = EdgeIndex(Path(location))
            return self._indexes[location]

    def _first(self) -> Registry:
        location = self.config.collection if self.config.qdrant_url else str(self.config.index_path)
        written = next(iter(self._open(location).payloads(limit=1)), {}).get("vectors")
        space = written or vector_space(self.config.embed_backend)
        now = time.time()
        first = Generation(name="g1", backend=backend_of(space) if written else resolve(self.config.embed_backend),
                           space=space, location=location, chunk_tokens=self.config.chunk_tokens,
                           chunk_overlap=self.config.chunk_overlap_tokens, created_at=now, built_at=now)
        return Registry(live="g1", generations={"g1": first})

    def _save(self) -> None:
        self.registry.save(self.record)

    # -- the alias on a Qdrant server ---------------------------------------------------------------------

    def alias(self) -> str | None:
        """On a server, the collection alias that names the live generation (other readers query it)."""
        return f"{self.config.collection}-live" if self.config.qdrant_url else None

    def _aliased(self) -> str | None:
        """The collection the alias names now."""
        found = {a.alias_name: a.collection_name for a in self._server().get_aliases().aliases}
        return found.get(self.alias() or "")

    def _point_alias(self, location: str) -> None:
        """Move the alias to ``location`` (a generation's collection) in one request: Qdrant applies the
        delete and the create together, so a reader of the alias sees the old collection or the new one."""
        alias = self.alias()
        if alias is None or self._aliased() == location:
            return
        from qdrant_client import models as m

        ops: list[Any] = [m.DeleteAliasOperation(delete_alias=m.DeleteAlias(alias_name=alias))] if self._aliased() else []
        ops.append(m.CreateAliasOperation(create_alias=m.CreateAlias(collection_name=location, alias_name=alias)))
        self._server().update_collection_aliases(change_aliases_operations=ops)

    def _follow_alias(self) -> None:
        """At open: a switch moves the alias first, then the registry; a crash between them leaves the alias
        right, so the registry follows it."""
        if self.alias() is None:
            return
        now = self._aliased()
        named = [g.name for g in self.registry.generations.values() if g.location == now]
        if named and named[0] != self.registry.live:
            self.registry.previous, self.registry.live = self.registry.live, named[0]
            self._save()

    def _publish(self) -> None:
        """Tell the embedding processes which runtime the live generation uses; say when it is not the configured one."""
        live = self.live()
        self.state.r.set(keys.LIVE_BACKEND, live.backend)
        wanted = resolve(self.config.embed_backend)
        if vector_space(wanted) != live.space:
            log.warning("the live index generation %s holds %s vectors; the configured embedder (%s) writes %s. "
                        "It keeps its own embedder. To move: sluice generation create --embed-backend %s, then "
                        "sluice generation switch", live.name, live.space, wanted, vector_space(wanted), wanted)

    # -- reading ----------------------------------------------------------------------------------------

    def live(self) -> Generation:
        return self.registry.generations[self.registry.live]

    def live_index(self) -> Index:
        return self._open(self.live().location)

    def live_embedder(self) -> Embedder:
        return self.embedder_for(self.live().backend)  # type: ignore[no-any-return]

    def others(self) -> list[tuple[Generation, Index, Embedder]]:
        """The kept generations besides the live one: every change is written to them too."""
        live = self.registry.live
        return [(g, self._open(g.location), self.embedder_for(g.backend)) for g in self.registry.kept() if g.name != live]

    def mismatch(self) -> str | None:
        """What `sluice status` says when the live generation is not in the configured embedder's space."""
        wanted = resolve(self.config.embed_backend)
        live = self.live()
        if vector_space(wanted) == live.space:
            return None
        return (f"live generation {live.name} is {live.space} ({live.backend}); the configured embedder {wanted} writes "
                f"{vector_space(wanted)}: sluice generation create --embed-backend {wanted} && sluice generation switch")

    def overview(self) -> dict[str, Any]:
        with self.lock:
            out = {name: g.model_dump(mode="json") | {"chunks": self._open(g.location).count(), "live": name == self.registry.live}
                   for name, g in self.registry.generations.items()}
            alias = {"alias": {"name": self.alias(), "collection": self._aliased()}} if self.alias() else {}
            return {"live": self.registry.live, "previous": self.registry.previous, "generations": out,
                    "mismatch": self.mismatch(), **alias}

    # -- writing every generation -------------------------------------------------------------------------

    def write_others(self, chunks: list[Chunk], meta: DocumentMeta, force: bool = False) -> int:
        embedded = 0
        for generation, index, embedder in self.others():
            with self.lock:
                embedded += index_version(index, chunks, replace(meta, vectors=generation.space), embedder.embed,
                                          self.bm25, force)
        return embedded

    def delete_others(self, doc_id: str) -> None:
        for _, index, _ in self.others():
            with self.lock:
                index.delete_document(doc_id)

    # -- building --------------------------------------------------------------------------------------

    def create(self, backend: str) -> Generation:
        runtime = resolve(backend)  # type: ignore[arg-type]
        with self.lock:
            if any(g.status == "building" for g in self.registry.generations.values()):
                raise ValueError("a generation is being built already: wait for it, or drop it")
            where = f"{self.config.collection}-{{name}}" if self.config.qdrant_url else str(
                self.config.data_dir / "generations" / "{name}")
            generation = started(self.registry, runtime, vector_space(runtime), where, self.config.chunk_tokens,
                                 self.config.chunk_overlap_tokens)
            self._save()
        self._start_build(generation.name, _asking_worker())
        return generation

    def _start_build(self, name: str, hostname: str | None = None) -> None:
        threading.Thread(target=self._build, args=(name, hostname), name=f"build-{name}", daemon=True).start()

    def _yield_to_live_traffic(self) -> None:
        """Admission control: a build waits while searches or index work are queued."""
        for _ in range(100):
            if self._stop.is_set() or not (self.state.r.llen("query") or self.state.r.llen("index")):
                return
            time.sleep(0.02)

    def _build(self, name: str, hostname: str | None = None) -> None:
        generation = self.registry.generations[name]
        # every core: a build runs only while no live work is queued (_yield_to_live_traffic), and the query
        # worker's share of them (one of two, beside its other threads) made it embed at half speed
        target, embedder = self._open(generation.location), self.embedder_for(generation.backend, os.cpu_count())
        task = BuildTask(generation, hostname)
        task.begin()
        try:
            for attempt in range(2):  # the second pass meets what changed in the live one meanwhile
                docs = sorted(self.live_index().documents())
                generation.documents, generation.copied = len(docs), 0
                generation.chunks_total = self.live_index().count()
                for start in range(0, len(docs), BUILD_BATCH):
                    if self._stop.is_set() or name not in self.registry.generations:
                        return
                    self._yield_to_live_traffic()
                    batch = docs[start:start + BUILD_BATCH]
                    with self.lock:
                        generation.embedded += copy_documents(self.live_index(), target, batch, embedder.embed,
                                                              self.bm25, generation.space)
                    generation.copied += len(batch)
                    generation.chunks_done = min(target.count(), generation.chunks_total)
                    self._save()
                    task.progress()
                with self.lock:
                    for doc_id in set(target.documents()) - set(self.live_index().documents()):
                        target.delete_document(doc_id)
            with self.lock:
                generation.status, generation.built_at = "ready", time.time()
                generation.chunks_done = generation.chunks_total = target.count()
                self._save()
            log.info("generation %s built: %d documents, %d chunks embedded", name, generation.copied, generation.embedded)
        except Exception as exc:
            with self.lock:
                generation.status, generation.error = "failed", f"{type(exc).__name__}: {str(exc)[:200]}"
                self._save()
            log.exception("building generation %s failed", name)
        finally:
            if not self._stop.is_set():  # a stopping worker resumes the build at its next start
                task.end(dropped=name not in self.registry.generations)

    # -- the gate, the switch and the rest ------------------------------------------------------------------

    def _get(self, name: str | None) -> Generation:
        name = name or self._newest_other()
        if name not in self.registry.generations:
            raise ValueError(f"no generation {name!r}: see sluice generation list")
        return self.registry.generations[name]

    def _newest_other(self) -> str:
        others = [g for g in self.registry.generations.values() if g.name != self.registry.live]
        if not others:
            raise ValueError("there is only the live generation: create one first")
        return max(others, key=lambda g: g.created_at).name

    def compare(self, name: str | None = None, probes: int = PROBES, judged: dict[str, Any] | None = None
                ) -> dict[str, Any]:
        """The gate: nDCG@10 on ``judged`` queries ({"queries": {id: text}, "qrels": {id: {doc: grade}}}) when
        given, else the self-check on ``probes`` sampled chunks; the candidate may trail the live one by a little."""
        generation = self._get(name)
        if generation.status != "ready":
            raise ValueError(f"generation {generation.name} is {generation.status}, not ready")
        pairs = [(self.live_index(), self.live_embedder().embed),
                 (self._open(generation.location), self.embedder_for(generation.backend).embed)]
        if judged:
            live_score, new_score = judged_check(pairs, judged["queries"], judged["qrels"], self.bm25)
            measure, tolerance, size = "ndcg@10", JUDGED_TOLERANCE, len(judged["qrels"])
        else:
            payloads = list(self.live_index().payloads())
            sample = random.Random(7).sample(payloads, min(probes, len(payloads)))
            live_score, new_score = self_check(pairs, sample, self.bm25)
            measure, tolerance, size = "own chunk in top 10", GATE_TOLERANCE, len(sample)
        gate: dict[str, float | bool | str] = {
            "measure": measure, "probes": size, "live": round(live_score, 4), "candidate": round(new_score, 4),
            "passed": new_score >= live_score - tolerance}
        with self.lock:
            generation.gate = gate
            self._save()
        return {"generation": generation.name, "against": self.registry.live, **gate}

    def switch(self, name: str | None = None, force: bool = False) -> dict[str, Any]:
        with self.lock:
            generation = self._get(name)
            if generation.name == self.registry.live:
                raise ValueError(f"generation {generation.name} is live already")
            if generation.status != "ready":
                raise ValueError(f"generation {generation.name} is {generation.status}, not ready")
            if not force and not (generation.gate and generation.gate.get("passed")):
                why = "has not been compared" if not generation.gate else "failed its comparison"
                raise ValueError(f"generation {generation.name} {why}: run sluice generation compare (or switch --force)")
            self._point_alias(generation.location)  # readers of the alias first; the registry follows
            self.registry.previous, self.registry.live = self.registry.live, generation.name
            self._save()
            self._publish()
            return {"live": generation.name, "previous": self.registry.previous}

    def rollback(self) -> dict[str, Any]:
        previous = self.registry.previous
        if not previous or previous not in self.registry.generations:
            raise ValueError("no previous generation to go back to")
        return self.switch(previous, force=True)

    def drop(self, name: str) -> dict[str, Any]:
        with self.lock:
            generation = self._get(name)
            if generation.name == self.registry.live:
                raise ValueError(f"generation {generation.name} is live: switch to another one first")
            del self.registry.generations[generation.name]
            if self.registry.previous == generation.name:
                self.registry.previous = None
            self._save()
            index = self._indexes.pop(generation.location, None)
            if index is not None and not self.config.qdrant_url:  # on a server the client serves the others too
                index.close()
            if self.config.qdrant_url:
                for collection in (generation.location, f"{generation.location}-changes"):
                    self._server().delete_collection(collection)
            else:
                shutil.rmtree(generation.location, ignore_errors=True)
                Path(generation.location + ".changes.json").unlink(missing_ok=True)
            return {"dropped": generation.name}

    def close(self) -> None:
        self._stop.set()
        if self._client is not None:
            self._client.close()
            return
        for index in self._indexes.values():
            index.close()


def _asking_worker() -> str | None:
    """The Celery worker whose task asked for a build (Flower files the build under it)."""
    from celery import current_task

    return getattr(getattr(current_task, "request", None), "hostname", None) if current_task else None
