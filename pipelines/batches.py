"""The OpenAI Batch API lifecycle: submit when a size or age threshold is reached, poll, collect.

Why it is written as a state machine over a small key-value store: a worker
may die between any two steps, and the next tick (any worker, any time) must
carry on from what the store says. Every request record names its state
(pending, submitting, submitted); every batch record is open until its
results are collected, and is closed in one write together with its cost,
so a duplicate poll or a replay after a crash neither delivers twice nor
counts twice. Ticks must not overlap (the caller holds a lock).

Failure modes and what happens:
- ``failed`` / ``expired`` / ``cancelled`` batches: collected lines are used,
  the rest go back to pending and are resubmitted (each try counts).
- failed lines of a completed batch: only those are retried, up to a cap;
  then the document keeps its extractive summary and the reason is recorded.
- a result for content that changed since: discarded.
- a crash between ``files.create`` and recording the batch: the submission
  record finds the batch again by its metadata, or re-queues its requests.

Relation requests (pipelines/relations.py) ride in the same batches, at the
same price and under the same budget. Their answers are validated line by
line; a rejected answer is counted (``rejected``, ``relations_rejected``) and
dropped, never applied and never retried. A transport failure of such a line
(an error line, an unfinished batch) is retried like a summary's.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipelines.relations import validate
from pipelines.summarise import (
    LineResult,
    Prompt,
    TokenCounter,
    batch_line,
    combine,
    cost_usd,
    parse_results,
)
from schemas.graph import ChunkRelations
from schemas.summaries import (
    BatchRecord,
    Submission,
    Summary,
    SummaryRequest,
    SummaryTotals,
)

log = logging.getLogger("sluice.batches")
ACTIVE = {"validating", "in_progress", "finalizing", "cancelling"}


class Store(Protocol):
    """JSON records by key (Redis in production, a dict in unit tests)."""

    def get(self, key: str) -> dict[str, Any] | None: ...
    def put(self, key: str, value: dict[str, Any]) -> None: ...
    def add(self, key: str, value: dict[str, Any]) -> bool: ...  # only if absent
    def delete(self, key: str) -> None: ...
    def items(self, prefix: str) -> list[tuple[str, dict[str, Any]]]: ...


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.data.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value

    def add(self, key: str, value: dict[str, Any]) -> bool:
        return self.data.setdefault(key, value) is value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def items(self, prefix: str) -> list[tuple[str, dict[str, Any]]]:
        return sorted((k, v) for k, v in self.data.items() if k.startswith(prefix))


@dataclass
class BatchConfig:
    model: str = "gpt-4o-mini"
    batch_size: int = 100
    max_age_s: float = 600.0
    max_attempts: int = 3
    input_tokens: int = 6000
    output_tokens: int = 300
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: {"gpt-4o-mini": (0.15, 0.60)})
    discount: float = 0.5
    budget_usd: float | None = None
    max_lines: int = 50_000  # the Batch API's per-file limit

    @property
    def words(self) -> int:
        return max(40, int(self.output_tokens * 0.6))


@dataclass
class Hooks:
    """How results leave this module: the caller knows documents, redaction and storage."""

    current_version: Callable[[str], str | None]  # a document's indexed content hash, None if deleted
    deliver: Callable[[Summary], bool]  # store a summary; False if the document changed meanwhile
    give_up: Callable[[str, str, str], None]  # (doc id, version, reason): no batch summary after all
    scrub: Callable[[str], str] = lambda text: text  # the redact stage, run again on returned text
    relations: Callable[[ChunkRelations], bool] = lambda found: False  # validated relations, to the graph


class BatchSummariser:
    def __init__(self, store: Store, cfg: BatchConfig, hooks: Hooks, count: TokenCounter, prompt: Prompt,
                 client: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.store, self.cfg, self.hooks, self.count, self.prompt = store, cfg, hooks, count, prompt
        self.client = client
        self.clock = clock

    # -- requests ------------------------------------------------------------

    def enqueue(self, requests: list[SummaryRequest]) -> int:
        """Queue requests unless the same custom_id is already queued or in flight."""
        return sum(self.store.add(f"req:{r.custom_id}", r.model_dump()) for r in requests)

    def requests(self) -> list[SummaryRequest]:
        return [SummaryRequest.model_validate(v) for _, v in self.store.items("req:")]

    def batches(self) -> list[BatchRecord]:
        return [BatchRecord.model_validate(v) for _, v in self.store.items("batch:")]

    def _put(self, r: SummaryRequest) -> None:
        self.store.put(f"req:{r.custom_id}", r.model_dump())

    def _stale(self, r: SummaryRequest) -> bool:
        return self.hooks.current_version(r.doc_id) != r.version

    def forget(self, doc_id: str) -> None:
        """A deleted document: its waiting requests go (submitted ones are discarded on arrival)."""
        for r in self.requests():
            if r.doc_id == doc_id and r.state == "pending":
                self.store.delete(f"req:{r.custom_id}")

    # -- tick ----------------------------------------------------------------

    def tick(self) -> dict[str, Any]:
        """One beat: recover interrupted submissions, collect finished batches, submit what is due."""
        recovered = self.recover()
        polled = self.poll()
        submitted = self.flush()
        return {"recovered": recovered, "polled": polled, "submitted": submitted}

    def recover(self) -> int:
        subs = [Submission.model_validate(v) for _, v in self.store.items("sub:")]
        if not subs:
            return 0
        recent = self.client.batches.list(limit=100).data  # one page: a submission is minutes old at most
        remote = {(b.metadata or {}).get("sluice_submission"): b for b in recent}
        for sub in subs:
            found = remote.get(sub.id)
            if found is not None:
                self._record_batch(found.id, sub, sub.started_at)
            else:
                for cid in sub.custom_ids:
                    r = self.store.get(f"req:{cid}")
                    if r:
                        self._put(SummaryRequest.model_validate(r).model_copy(
                            update={"state": "pending", "submission": None}))
            self.store.delete(f"sub:{sub.id}")
        return len(subs)

    def flush(self) -> str | None:
        """Submit waiting requests as one batch when enough wait or the oldest waited long enough."""
        now = self.clock()
        waiting = []
        for r in self.requests():
            if r.state != "pending":
                continue
            if self._stale(r):
                self.store.delete(f"req:{r.custom_id}")  # never pay for content that is gone
            else:
                waiting.append(r)
        if not waiting:
            return None
        waiting.sort(key=lambda r: (r.queued_at, r.custom_id))
        due = len(waiting) >= self.cfg.batch_size or now - waiting[0].queued_at >= self.cfg.max_age_s
        if not due and not any(r.attempts for r in waiting):  # retries have waited already: due at once
            return None
        chosen, estimate = self._affordable(waiting[: self.cfg.max_lines])
        if not chosen:
            return None
        lines = "\n".join(batch_line(r, self.cfg.model, self.cfg.output_tokens) for r in chosen) + "\n"
        uploaded = self.client.files.create(file=("sluice-summaries.jsonl", lines.encode()), purpose="batch")
        sub = Submission(id=uuid.uuid4().hex, input_file_id=uploaded.id, custom_ids=[r.custom_id for r in chosen],
                         started_at=now)
        self.store.put(f"sub:{sub.id}", sub.model_dump())
        for r in chosen:
            self._put(r.model_copy(update={"state": "submitting", "submission": sub.id}))
        batch = self.client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
            metadata={"sluice_submission": sub.id, "prompt": self.prompt.version},
        )
        self._record_batch(batch.id, sub, now, estimate)
        self.store.delete(f"sub:{sub.id}")
        log.info("submitted batch %s with %d requests (estimated $%.4f)", batch.id, len(chosen), estimate)
        return str(batch.id)

    def _affordable(self, waiting: list[SummaryRequest]) -> tuple[list[SummaryRequest], float]:
        """The longest prefix that keeps committed spend within the budget; a refusal is recorded."""
        committed = self.totals().committed_usd
        chosen, estimate = [], 0.0
        for r in waiting:
            cost = cost_usd(self.cfg.model, r.input_tokens, r.max_tokens or self.cfg.output_tokens, self.cfg.prices,
                            self.cfg.discount)
            if cost is None:
                self._refuse(f"no price for model {self.cfg.model!r} in the price table; not submitting")
                return [], 0.0
            if self.cfg.budget_usd is not None and committed + estimate + cost > self.cfg.budget_usd:
                break
            chosen.append(r)
            estimate += cost
        if len(chosen) < len(waiting):
            self._refuse(f"budget ${self.cfg.budget_usd:.2f} reached (committed ${committed:.4f}): "
                         f"{len(waiting) - len(chosen)} requests wait")
        return chosen, estimate

    def _refuse(self, reason: str) -> None:
        meta = self.store.get("meta") or {}
        meta.update(refusals=int(meta.get("refusals", 0)) + 1, last_refusal=reason)
        self.store.put("meta", meta)
        log.warning("summary batch refused: %s", reason)

    def _record_batch(self, batch_id: str, sub: Submission, at: float, estimate: float = 0.0) -> None:
        rec = BatchRecord(id=batch_id, input_file_id=sub.input_file_id, custom_ids=sub.custom_ids,
                          model=self.cfg.model, submitted_at=at, estimated_usd=estimate)
        self.store.add(f"batch:{batch_id}", rec.model_dump())
        for cid in sub.custom_ids:
            r = self.store.get(f"req:{cid}")
            if r:
                self._put(SummaryRequest.model_validate(r).model_copy(
                    update={"state": "submitted", "batch_id": batch_id, "submission": None}))

    # -- collecting ----------------------------------------------------------

    def poll(self) -> int:
        """Look at every open batch once; collect the finished ones. Errors leave a batch for the next tick."""
        done = 0
        for rec in self.batches():
            if rec.state != "open":
                continue
            try:
                remote = self.client.batches.retrieve(rec.id)
            except Exception as exc:  # noqa: BLE001  (slow or unreachable: try again next tick)
                log.warning("polling batch %s failed: %s", rec.id, exc)
                self.store.put(f"batch:{rec.id}", rec.model_copy(update={"polls": rec.polls + 1}).model_dump())
                continue
            if remote.status in ACTIVE:
                self.store.put(f"batch:{rec.id}", rec.model_copy(
                    update={"status": remote.status, "polls": rec.polls + 1}).model_dump())
                continue
            self._collect(rec, remote)
            done += 1
        return done

    def _content(self, file_id: str | None) -> str:
        return self.client.files.content(file_id).text if file_id else ""

    def _collect(self, rec: BatchRecord, remote: Any) -> None:
        results = parse_results(self._content(remote.output_file_id), self._content(remote.error_file_id))
        errors = [f"{e.code}: {e.message}" for e in ((remote.errors.data or []) if remote.errors else [])]
        counts = {"succeeded": 0, "failed": 0, "unfinished": 0, "discarded": 0, "rejected": 0}
        for cid in rec.custom_ids:
            outcome = self._settle(cid, results.get(cid), remote.status, rec.id)
            counts[outcome] = counts.get(outcome, 0) + 1
        used = [results[c] for c in rec.custom_ids if c in results]
        tokens_in, tokens_out = sum(r.input_tokens for r in used), sum(r.output_tokens for r in used)
        cost = cost_usd(rec.model, tokens_in, tokens_out, self.cfg.prices, self.cfg.discount) or 0.0
        closed = rec.model_copy(update={
            "state": "done", "status": remote.status, "finished_at": self.clock(), "polls": rec.polls + 1,
            "input_tokens": tokens_in, "output_tokens": tokens_out, "cost_usd": cost, "errors": errors[:10],
            **{k: v for k, v in counts.items() if k in BatchRecord.model_fields},
        })
        self.store.put(f"batch:{rec.id}", closed.model_dump())  # one write: results and cost together
        log.info("batch %s %s: %s, $%.4f", rec.id, remote.status, counts, cost)

    def _settle(self, cid: str, result: LineResult | None, status: str, batch_id: str) -> str:
        raw = self.store.get(f"req:{cid}")
        if raw is None:
            return "discarded"  # settled by an earlier (interrupted) collection, or the document left
        r = SummaryRequest.model_validate(raw)
        if r.batch_id != batch_id:
            return "discarded"  # resubmitted elsewhere meanwhile; that batch settles it
        if self._stale(r):
            self.store.delete(f"req:{cid}")
            for key, _ in self.store.items(f"parts:{r.doc_id}:{r.version[:16]}:"):
                self.store.delete(key)
            return "discarded"
        if r.kind == "relations" and result is not None and (result.ok or result.refusal):
            return self._relations(r, result, batch_id)
        if result is not None and result.ok:
            self._succeeded(r, result.text, batch_id)
            return "succeeded"
        reason = result.error if result is not None else f"batch {status} before this request finished"
        self._retry(r, reason)
        return "failed" if result is not None else "unfinished"

    def _retry(self, r: SummaryRequest, reason: str) -> None:
        attempts = r.attempts + 1
        if attempts >= self.cfg.max_attempts:
            self.store.delete(f"req:{r.custom_id}")
            self.hooks.give_up(r.doc_id, r.version, f"gave up after {attempts} attempts: {reason}")
            meta = self.store.get("meta") or {}
            self.store.put("meta", {**meta, "given_up": int(meta.get("given_up", 0)) + 1})
            return
        self._put(r.model_copy(update={"state": "pending", "attempts": attempts, "batch_id": None, "last_error": reason}))

    def _succeeded(self, r: SummaryRequest, text: str, batch_id: str) -> None:
        text = self.hooks.scrub(text)
        if r.phase == "part":
            key = f"parts:{r.doc_id}:{r.version[:16]}:L{r.level}"
            parts = {**(self.store.get(key) or {}), str(r.part): text}
            self.store.put(key, parts)
            self.store.delete(f"req:{r.custom_id}")
            if len(parts) == r.parts:
                partials = [parts[str(i)] for i in range(r.parts)]
                self.enqueue(combine(r.doc_id, r.version, partials, self.prompt, self.count, self.cfg.input_tokens,
                                     self.cfg.words, self.clock(), r.level))
                self.store.delete(key)
            return
        method = f"OpenAI Batch API, prompt {self.prompt.version}" + (", map-reduce" if r.phase == "combine" else "")
        self.hooks.deliver(Summary(doc_id=r.doc_id, version=r.version, text=text, kind="batch", method=method,
                                   model=self.cfg.model, prompt_version=self.prompt.version, batch_id=batch_id,
                                   created_at=self.clock()))
        self.store.delete(f"req:{r.custom_id}")

    def _relations(self, r: SummaryRequest, result: LineResult, batch_id: str) -> str:
        """Validate one relation answer; apply it only if all of it holds."""
        verdict = validate(result.text if result.ok else None, result.refusal or None, r.entities)
        self.store.delete(f"req:{r.custom_id}")
        meta = self.store.get("meta") or {}
        if verdict.rejected:
            self.store.put("meta", {**meta, "relations_rejected": int(meta.get("relations_rejected", 0)) + 1,
                                    "last_rejection": verdict.rejected})
            log.warning("relation answer %s in batch %s rejected: %s", r.custom_id, batch_id, verdict.rejected)
            return "rejected"
        assert r.chunk_hash is not None
        self.hooks.relations(ChunkRelations(doc_id=r.doc_id, version=r.version, chunk_hash=r.chunk_hash,
                                            relations=verdict.relations))
        self.store.put("meta", {**meta, "relations_delivered": int(meta.get("relations_delivered", 0)) + 1})
        return "succeeded"

    # -- accounting ----------------------------------------------------------

    def totals(self) -> SummaryTotals:
        batches = self.batches()
        reqs = self.requests()
        meta = self.store.get("meta") or {}
        spent = sum(b.cost_usd for b in batches)
        return SummaryTotals(
            batches=len(batches), open_batches=sum(b.state == "open" for b in batches),
            pending_requests=sum(r.state == "pending" for r in reqs),
            submitted_requests=sum(r.state != "pending" for r in reqs),
            input_tokens=sum(b.input_tokens for b in batches), output_tokens=sum(b.output_tokens for b in batches),
            cost_usd=round(spent, 9),
            committed_usd=round(spent + sum(b.estimated_usd for b in batches if b.state == "open"), 9),
            budget_usd=self.cfg.budget_usd, refusals=int(meta.get("refusals", 0)),
            last_refusal=str(meta.get("last_refusal", "")), given_up=int(meta.get("given_up", 0)),
            relations_delivered=int(meta.get("relations_delivered", 0)),
            relations_rejected=int(meta.get("relations_rejected", 0)), last_rejection=str(meta.get("last_rejection", "")),
        )
