"""One trace per event, and one per search: OpenTelemetry spans across every process of sluice.

Off unless the standard variables ask for it (``OTEL_TRACES_EXPORTER`` other than ``none``, or
``OTEL_EXPORTER_OTLP_ENDPOINT``/``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); when off, nothing of the SDK
is imported and each helper here returns at its first line. ``OTEL_SERVICE_NAME`` names the process
(default ``sluice``); the exporters are ``otlp`` (OTLP over HTTP/protobuf) and ``console``.

The context travels in each Celery message's headers (``traceparent``): the ingress span
(workers/ingress/admission.py) is the root of an event's trace, each step's span
(workers/runtime/step.py) is the child of whatever published it, or of the step it ran after in
place. A publish with no span around it (the API asking a search, the in-flight sweep) opens a
producer span of its own, so the worker's span still joins a trace. Attributes are ids, names
and counts only: never document text (a span is shown to whoever opens the viewer).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("sluice.tracing")
SERVICE = "sluice"


def configured(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether the standard OpenTelemetry variables ask for traces."""
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


ENABLED = configured()
_tracer: Any = None
_producing: dict[str, tuple[Any, Any]] = {}  # task id -> (producer span, context token), publish to published
_consuming: dict[str, tuple[Any, Any]] = {}  # task id -> (service task span, context token)


def install() -> None:
    """Set up the tracer provider, its exporters and the Celery hooks once per process (when configured)."""
    global _tracer
    if not ENABLED or _tracer is not None:
        return
    from celery import signals
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: SERVICE})
    provider = TracerProvider(resource=resource)
    for name in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").lower().split(","):
        exporter: SpanExporter
        if name.strip() == "console":
            exporter = ConsoleSpanExporter()
        elif name.strip() == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT
        else:
            log.warning("unknown OTEL_TRACES_EXPORTER %r: ignored (otlp and console are known)", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))  # re-starts its thread in a forked child
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("sluice")
    signals.before_task_publish.connect(_before_publish, weak=False)
    signals.after_task_publish.connect(_after_publish, weak=False)
    signals.task_prerun.connect(_task_started, weak=False)
    signals.task_postrun.connect(_task_ended, weak=False)
    signals.worker_process_shutdown.connect(lambda **_: provider.force_flush(), weak=False)


def _attributes(event_id: str | None, doc_id: str | None, extra: dict[str, Any]) -> dict[str, Any]:
    found = {"sluice.event_id": event_id, "sluice.doc_id": doc_id, **{f"sluice.{k}": v for k, v in extra.items()}}
    return {k: v for k, v in found.items() if v is not None}


@contextmanager
def span(name: str, event_id: str | None = None, doc_id: str | None = None, carrier: Any = None,
         **attributes: Any) -> Iterator[Any]:
    """A span around the block (None when tracing is off); its parent is the current span, else the
    context ``carrier`` (a Celery task request) brought from the publisher."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import context, propagate

    parent = None
    if carrier is not None and not _current_is_valid():
        parent = propagate.extract(carrier, getter=_REQUEST_GETTER)  # type: ignore[arg-type]  # duck-typed Getter
    token = context.attach(parent) if parent is not None else None
    try:
        with _tracer.start_as_current_span(name, attributes=_attributes(event_id, doc_id, attributes)) as s:
            yield s
    finally:
        if token is not None:
            context.detach(token)


def note(name: str, **attributes: Any) -> None:
    """A span event on the current span (a retry, a dead letter); attributes are ids, names and counts."""
    if _tracer is None:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    current.add_event(name, attributes=_attributes(None, None, attributes))
    if name == "dead_letter":
        current.set_status(trace.Status(trace.StatusCode.ERROR, str(attributes.get("reason", ""))))


def annotate(**attributes: Any) -> None:
    """Add attributes to the current span (what a step learnt once it began: the document id, its outcome)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(_attributes(None, None, attributes))


def _current_is_valid() -> bool:
    from opentelemetry import trace

    return bool(trace.get_current_span().get_span_context().is_valid)


class _RequestGetter:
    """Reads propagation headers from a Celery task request (custom message headers become its attributes)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None and isinstance(getattr(carrier, "headers", None), dict):
            value = carrier.headers.get(key)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Any) -> list[str]:
        return []


_REQUEST_GETTER = _RequestGetter()


def _before_publish(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Put the current context in the message's headers; a publish outside any span gets a producer span."""
    if headers is None:
        return
    from opentelemetry import context, propagate, trace

    if not _current_is_valid() and headers.get("id"):
        producer = _tracer.start_span(f"send {sender}", kind=trace.SpanKind.PRODUCER)
        _producing[headers["id"]] = (producer, context.attach(trace.set_span_in_context(producer)))
    propagate.inject(headers)


def _after_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    from opentelemetry import context

    producing = _producing.pop((headers or {}).get("id", ""), None)
    if producing is not None:
        producer, token = producing
        context.detach(token)
        producer.end()


def _task_started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Service tasks (searches, documents, ticks) get a span from the worker's signals; steps open their own."""
    if task is None or not task_id or getattr(task, "self_timed", False):
        return
    from opentelemetry import context, propagate, trace

    parent = propagate.extract(task.request, getter=_REQUEST_GETTER)  # type: ignore[arg-type]  # duck-typed Getter
    started = _tracer.start_span(task.name, context=parent, kind=trace.SpanKind.CONSUMER)
    _consuming[task_id] = (started, context.attach(trace.set_span_in_context(started, parent)))


def _task_ended(task_id: str | None = None, state: str | None = None, **_: Any) -> None:
    consuming = _consuming.pop(task_id or "", None)
    if consuming is not None:
        ended, token = consuming
        ended.set_attribute("sluice.state", state or "unknown")
        from opentelemetry import context

        context.detach(token)
        ended.end()


def instrument_api(api: Any) -> None:
    """Server spans for the HTTP API (FastAPI), so a search's trace starts at the request."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(api)
