"""The Celery application: queues, routing and delivery guarantees.

Late acks plus reject-on-worker-lost mean a task whose worker dies is
delivered again; that is safe only because every stage is idempotent.
The visibility timeout stays just above the longest time a message may rightly
stay unacked (the task limit, or a retry's countdown), so a slow task is never
handed to a second worker while the first is still on it, and the work of a
worker that died comes back no later than it must.
"""

from __future__ import annotations

from celery import Celery

from schemas.settings import Settings
from workers.runtime import tracing
from workers.runtime.flow import SERVICES, STAGE_QUEUES, STAGES

# Query tasks return indexed text, keys and entities to their caller only: the worker's "succeeded"
# log line and Flower's task-succeeded event show the result cut to its shape ("[, ...]").
CONTENT_RESULT = {"resultrepr_maxsize": 1}

# Every module that defines tasks; a worker imports them all at start (tests: app.loader.import_default_modules()).
TASK_MODULES = [
    *(f"workers.stages.{name}" for name in STAGES),  # one module per stage
    "workers.followups.steps",
    "workers.followups.summaries",
    "workers.followups.relations",
    "workers.followups.batch",
    "workers.query.tasks",
    "workers.runtime.sweep",
]
app = Celery("sluice", include=TASK_MODULES)
tracing.install()  # only when the OTEL_* variables ask for traces; before any worker forks its pool

# Questions to the index owner and beat ticks send no task events: Flower's task list shows ingestion
# (the route's stages and follow-ups, and the summaries and relations a batch delivers); /metrics still
# counts them all (workers/runtime/telemetry.py times every sluice.* task from worker signals, events or not).
QUIET = frozenset(SERVICES) - {"summary_index", "graph_relations"}
MAX_MEMORY_PER_CHILD_KIB = 4 * 1024 * 1024  # a pool child past 4 GiB resident is replaced after its task


def beat_schedule(s: Settings) -> dict[str, dict[str, object]]:
    """Periodic work for ``celery beat``; a tick that waited longer than its period is dropped."""
    return {
        "summary-tick": {"task": "sluice.summary_tick", "schedule": s.summary_poll_interval_s,
                         "options": {"expires": s.summary_poll_interval_s}},
        "graph-communities": {"task": "sluice.graph_communities", "schedule": s.graph_communities_interval_s,
                              "options": {"expires": s.graph_communities_interval_s}},
        "in-flight-sweep": {"task": "sluice.sweep", "schedule": s.sweep_interval_s,
                            "options": {"expires": s.sweep_interval_s}},
    }


def visibility_timeout(s: Settings) -> float:
    """How long a delivered message may stay unacked before the broker hands it out again.

    A task (with the stages it runs in place) ends within ``task_time_limit_s``; a retry's message
    is held unacked until its countdown (workers/runtime/step.py: at most 1.5 x
    min(retry_backoff_s x 2^(max_retries - 1), 300 s)). Ten per cent more, at least 10 s, for clocks."""
    countdown = min(s.retry_backoff_s * 2 ** max(0, s.max_retries - 1), 300.0) * 1.5
    longest = max(s.task_time_limit_s, countdown)
    return float(round(longest + max(10.0, longest / 10)))


def publish_retry_policy(s: Settings) -> dict[str, float]:
    """kombu's retry of a publish for about ``publish_retry_s``: every 0.5 s, then every 2 s."""
    return {"max_retries": max(1, round(s.publish_retry_s / 2) + 2), "interval_start": 0.5,
            "interval_step": 0.5, "interval_max": 2.0}


def _forget_connections() -> None:
    """Drop pooled broker connections and the cached result backend (the broker URL changed)."""
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)
    app.__dict__.pop("control", None)  # its mailbox holds on to the old producer pool


def configure(broker_url: str, s: Settings) -> Celery:
    if app.conf.broker_url and app.conf.broker_url != broker_url:
        _forget_connections()
    app.conf.update(
        broker_url=broker_url,
        result_backend=broker_url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=s.task_time_limit_s,
        task_soft_time_limit=s.task_time_limit_s - min(30, s.task_time_limit_s // 4),  # never under 3/4 of it
        broker_transport_options={"visibility_timeout": visibility_timeout(s)},
        task_publish_retry=True,  # a broker blip delays a hand-on; it does not lose it
        task_publish_retry_policy=publish_retry_policy(s),
        result_expires=3600,
        task_routes={**{f"sluice.{name}": {"queue": q} for name, q in STAGE_QUEUES.items()},
                     "sluice.sweep": {"queue": "query"}},  # the index owner's quick queue: one consumer, always up
        task_default_queue="parse",
        worker_send_task_events=True,
        task_annotations={f"sluice.{name}": {"send_events": False} for name in sorted(QUIET)},
        worker_max_memory_per_child=MAX_MEMORY_PER_CHILD_KIB,
        task_send_sent_event=False,  # one publish less per hop; Flower shows tasks from "received" on
        task_track_started=False,  # Flower learns "started" from worker events; no extra backend write
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule=beat_schedule(s),
    )
    return app
