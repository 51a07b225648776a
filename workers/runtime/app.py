"""The Celery application: queues, routing and delivery guarantees.

Late acks plus reject-on-worker-lost mean a task whose worker dies is
delivered again; that is safe only because every stage is idempotent.
The visibility timeout stays above the longest task limit so a slow task is
never handed to a second worker while the first is still on it.
"""

from __future__ import annotations

from celery import Celery

from schemas.settings import Settings
from workers.runtime.flow import STAGE_QUEUES, STAGES

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
]
app = Celery("sluice", include=TASK_MODULES)


def beat_schedule(s: Settings) -> dict[str, dict[str, object]]:
    """Periodic work for ``celery beat``; a tick that waited longer than its period is dropped."""
    return {
        "summary-tick": {"task": "sluice.summary_tick", "schedule": s.summary_poll_interval_s,
                         "options": {"expires": s.summary_poll_interval_s}},
        "graph-communities": {"task": "sluice.graph_communities", "schedule": s.graph_communities_interval_s,
                              "options": {"expires": s.graph_communities_interval_s}},
    }


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
        broker_transport_options={"visibility_timeout": s.task_time_limit_s * 2},
        result_expires=3600,
        task_routes={f"sluice.{name}": {"queue": q} for name, q in STAGE_QUEUES.items()},
        task_default_queue="parse",
        worker_send_task_events=True,
        task_send_sent_event=False,  # one publish less per hop; Flower shows tasks from "received" on
        task_track_started=False,  # Flower learns "started" from worker events; no extra backend write
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        beat_schedule=beat_schedule(s),
    )
    return app
