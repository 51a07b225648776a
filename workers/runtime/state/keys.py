"""Every Redis key sluice writes, named in one place.

All start with ``sluice:`` so an operator can list, size or delete sluice's own data
(`redis-cli --scan --pattern 'sluice:*'`) without touching Celery's queues beside it.
"""

from __future__ import annotations

PREFIX = "sluice:"

# events: one hash per event, the newest event per document, stage done marks, events in flight
def event(event_id: str) -> str:
    return f"{PREFIX}event:{event_id}"


def latest_event(doc_id: str) -> str:
    return f"{PREFIX}latest:{doc_id}"


def stage_done(stage: str, event_id: str) -> str:
    return f"{PREFIX}done:{stage}:{event_id}"


IN_FLIGHT = f"{PREFIX}inflight"  # sorted set: event id -> admitted at (epoch s)


def artifact(kind: str, event_id: str) -> str:
    """What one stage of an event hands the next (redacted document, chunks, plan ...)."""
    return f"{PREFIX}art:{kind}:{event_id}"


# documents: status hash, indexed version, last failure
def document(doc_id: str) -> str:
    return f"{PREFIX}doc:{doc_id}"


DOCUMENTS = f"{PREFIX}doc:*"  # scan pattern


def document_version(doc_id: str) -> str:
    return f"{PREFIX}docver:{doc_id}"


def document_failure(doc_id: str) -> str:
    return f"{PREFIX}failed:{doc_id}"


# counters and dead letters
def counter(name: str) -> str:
    return f"{PREFIX}count:{name}"


COUNTERS = f"{PREFIX}count:*"  # scan pattern
DEAD_LETTERS = f"{PREFIX}dlq"  # hash: letter id -> JSON
LATENCY = f"{PREFIX}latency:"  # + task name: hash {bucket upper bound: count, "sum": seconds}
RUNS = f"{PREFIX}runs"  # hash {"<task>|<outcome>": count}


# re-index jobs and the bulk pacing budget
def job(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def job_cancel(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}:cancel"


JOBS = f"{PREFIX}jobs"  # sorted set: job id -> started at
BULK = f"{PREFIX}bulk"


# webhook deliveries and S3 notifications
def delivery(delivery_id: str) -> str:
    return f"{PREFIX}delivery:{delivery_id}"


def s3_sequencer(doc_id: str) -> str:
    return f"{PREFIX}s3seq:{doc_id}"


def s3_etags(doc_id: str) -> str:
    return f"{PREFIX}s3etag:{doc_id}"


def s3_lock(doc_id: str) -> str:
    return f"{PREFIX}lock:s3:{doc_id}"


# follow-ups: summaries, their Batch API records, graph versions, relation answers
def summary(doc_id: str) -> str:
    return f"{PREFIX}summary:{doc_id}"


SUMMARY_BATCHES = f"{PREFIX}summ:"  # prefix of the Batch API client's JSON records
SUMMARY_LOCK = f"{PREFIX}summ:lock"


def graph_version(doc_id: str) -> str:
    return f"{PREFIX}graphver:{doc_id}"


def relations(token: str) -> str:
    return f"{PREFIX}relations:{token}"


LIVE_BACKEND = f"{PREFIX}live-backend"  # the live index generation's embedding runtime, set by the index owner
