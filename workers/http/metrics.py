"""Prometheus ``/metrics`` for the API: everything read from Redis (and the query worker) at scrape time.

A collector that reads shared state when scraped is correct however many
worker processes and machines there are, and needs no multi-process
registry directory. Flower has worker and task metrics but no queue depth
(flower#1191), so the queue depths are here. Names:

- ``sluice_queue_depth{queue}``, ``sluice_unacked_messages``, ``sluice_in_flight_events``
- ``sluice_ingress_events_total{outcome}``: queued (accepted), unchanged, duplicate,
  failed (known to fail, refused), full (refused: no room; the submitter waits or answers 503)
- ``sluice_events_finished_total{status}``: done, unchanged, deleted, failed, superseded
- ``sluice_dead_lettered_total{stage}`` (ever) and ``sluice_dead_letters{stage}`` (held now)
- ``sluice_task_duration_seconds{task}`` histogram and ``sluice_task_runs_total{task,outcome}``:
  every task, named after its stage (parse, redact, ..., graph_extract, summarise) or query (search, ping)
- ``sluice_chunks_total{kind}``: embedded, reused, deleted
- ``sluice_index_chunks``, ``sluice_query_worker_up``
- ``sluice_generation_live{generation,space,backend}`` (1 for the live generation, 0 for the others),
  ``sluice_generation_chunks{generation}`` (points it holds), ``sluice_generation_building{generation}``
  (1 while its build runs), ``sluice_generation_build_chunks_done|_total{generation}`` and
  ``sluice_generation_build_documents_done|_total{generation}`` (a build's progress; done = total once built)
- ``sluice_graph_documents|entities|edges{tenant}``
- ``sluice_summary_cost_usd_total``, ``sluice_summary_tokens_total{direction}``,
  ``sluice_summary_batches{state}``, ``sluice_summary_requests{state}``, ``sluice_summary_budget_usd``
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from workers.followups.batch import summariser
from workers.query.health import query_worker_sizes
from workers.runtime import dispatch, telemetry
from workers.runtime.flow import ALL_QUEUES
from workers.runtime.state import State

log = logging.getLogger("sluice.metrics")
ASK_TIMEOUT_S = 2.0  # a scrape must stay well under Prometheus's 10 s scrape timeout
FINISHED = ("done", "unchanged", "deleted", "failed", "superseded")
INGRESS = ("queued", "unchanged", "duplicate", "failed", "full")
CHUNKS = ("embedded", "reused", "deleted")
# Every family this collector can export (histograms and counters by their base name); the Grafana
# dashboard may use only these (tests/test_deploy.py), and a scrape shows them all (tests/test_operations.py).
METRICS = (
    "sluice_queue_depth", "sluice_unacked_messages", "sluice_in_flight_events", "sluice_ingress_events",
    "sluice_events_finished", "sluice_dead_lettered", "sluice_dead_letters", "sluice_task_duration_seconds",
    "sluice_task_runs", "sluice_chunks", "sluice_query_worker_up", "sluice_index_chunks", "sluice_graph_documents",
    "sluice_graph_entities", "sluice_graph_edges", "sluice_summary_cost_usd", "sluice_summary_tokens",
    "sluice_summary_batches", "sluice_summary_requests", "sluice_summary_budget_usd", "sluice_generation_live",
    "sluice_generation_chunks", "sluice_generation_building", "sluice_generation_build_chunks_done",
    "sluice_generation_build_chunks_total", "sluice_generation_build_documents_done",
    "sluice_generation_build_documents_total",
)


class SluiceCollector(Collector):
    def __init__(self, state: State) -> None:
        self.st = state

    def collect(self) -> Iterator[Metric]:
        r, counters = self.st.r, self.st.counters()

        in_flight, depths = self.st.occupancy(ALL_QUEUES)
        depth = GaugeMetricFamily("sluice_queue_depth", "Messages waiting in a Celery queue.", labels=["queue"])
        for q, n in depths.items():
            depth.add_metric([q], n)
        yield depth
        yield GaugeMetricFamily("sluice_unacked_messages", "Messages taken by workers, not yet acknowledged.",
                                value=int(r.hlen("unacked")))
        yield GaugeMetricFamily("sluice_in_flight_events", "Events between ingress and a terminal state.",
                                value=in_flight)

        ingress = CounterMetricFamily("sluice_ingress_events", "Events submitted at an ingress, by outcome.",
                                      labels=["outcome"])
        for outcome in INGRESS:
            ingress.add_metric([outcome], counters.get(f"ingress:{outcome}", 0))
        yield ingress
        finished = CounterMetricFamily("sluice_events_finished", "Events that reached a terminal state.",
                                       labels=["status"])
        for status in FINISHED:
            finished.add_metric([status], counters.get(status, 0))
        yield finished

        held: dict[str, int] = {}
        for letter in self.st.dead_letters():
            held[letter["stage"]] = held.get(letter["stage"], 0) + 1
        ever = {k.removeprefix("dead_lettered:"): v for k, v in counters.items() if k.startswith("dead_lettered:")}
        total = CounterMetricFamily("sluice_dead_lettered", "Events dead-lettered, by stage.", labels=["stage"])
        now = GaugeMetricFamily("sluice_dead_letters", "Dead letters held now, by stage.", labels=["stage"])
        for stage in sorted(set(ever) | set(held) | {"parse"}):
            total.add_metric([stage], ever.get(stage, 0))
            now.add_metric([stage], held.get(stage, 0))
        yield total
        yield now

        hist = HistogramMetricFamily("sluice_task_duration_seconds", "Run time of each task (stage or query).",
                                     labels=["task"])
        for task, (buckets, total_s) in sorted(telemetry.latencies(r).items()):
            hist.add_metric([task], buckets, total_s)
        yield hist
        task_runs = CounterMetricFamily("sluice_task_runs", "Task runs, by outcome (ok, failed, duplicate, "
                                        "superseded, retry, ...).", labels=["task", "outcome"])
        for (task, outcome), n in sorted(telemetry.runs(r).items()):
            task_runs.add_metric([task, outcome], n)
        yield task_runs

        chunks = CounterMetricFamily("sluice_chunks", "Chunks embedded, reused unchanged, or deleted.",
                                     labels=["kind"])
        for kind in CHUNKS:
            chunks.add_metric([kind], counters.get(f"chunks_{kind}", 0))
        yield chunks

        yield from self._query_worker()
        yield from self._generations()
        yield from self._summaries()

    def _query_worker(self) -> Iterator[Metric]:
        index, graphs = query_worker_sizes(ASK_TIMEOUT_S)
        yield GaugeMetricFamily("sluice_query_worker_up", "1 if the query worker answered this scrape.",
                                value=int(index is not None))
        if index is not None:
            yield GaugeMetricFamily("sluice_index_chunks", "Chunks (points) in the index.", value=index["chunks"])
        for field in ("documents", "entities", "edges"):
            g = GaugeMetricFamily(f"sluice_graph_{field}", f"Knowledge graph size: {field}.", labels=["tenant"])
            for tenant, stats in sorted(graphs.items()):
                g.add_metric([tenant], stats.get(field, 0))
            yield g

    def _generations(self) -> Iterator[Metric]:
        """Every generation of the index and its build's progress, as the index owner knows them now."""
        result = dispatch.publish("generation", ("list", {}))
        try:
            listed = result.get(timeout=ASK_TIMEOUT_S)["generations"]
        except Exception as exc:  # the query worker is down or busy: sluice_query_worker_up says so
            result.backend.remove_pending_result(result)
            log.debug("generations unavailable: %s", exc)
            return
        live = GaugeMetricFamily("sluice_generation_live", "1 for the live index generation (searches use it), 0 for "
                                 "the others.", labels=["generation", "space", "backend"])
        size = GaugeMetricFamily("sluice_generation_chunks", "Chunks (points) in an index generation.",
                                 labels=["generation"])
        building = GaugeMetricFamily("sluice_generation_building", "1 while a generation's build runs.",
                                     labels=["generation"])
        progress = {f"sluice_generation_build_{what}_{end}": GaugeMetricFamily(
            f"sluice_generation_build_{what}_{end}", f"A generation build's {what}: {end}.", labels=["generation"])
            for what in ("chunks", "documents") for end in ("done", "total")}
        for name, g in sorted(listed.items()):
            live.add_metric([name, g["space"], g["backend"]], int(bool(g["live"])))
            size.add_metric([name], g["chunks"])
            building.add_metric([name], int(g["status"] == "building"))
            progress["sluice_generation_build_chunks_done"].add_metric([name], g.get("chunks_done", 0))
            progress["sluice_generation_build_chunks_total"].add_metric([name], g.get("chunks_total", 0))
            progress["sluice_generation_build_documents_done"].add_metric([name], g["copied"])
            progress["sluice_generation_build_documents_total"].add_metric([name], g["documents"])
        yield from (live, size, building, *progress.values())

    def _summaries(self) -> Iterator[Metric]:
        try:
            t = summariser(self.st).totals()
        except Exception as exc:  # summaries are optional; the rest of the scrape still counts
            log.warning("summary totals unavailable: %s", exc)
            return
        yield CounterMetricFamily("sluice_summary_cost_usd", "Spent on batch summaries (USD).", value=t.cost_usd)
        tokens = CounterMetricFamily("sluice_summary_tokens", "Batch summary tokens.", labels=["direction"])
        tokens.add_metric(["input"], t.input_tokens)
        tokens.add_metric(["output"], t.output_tokens)
        yield tokens
        batches = GaugeMetricFamily("sluice_summary_batches", "Summary batches.", labels=["state"])
        batches.add_metric(["open"], t.open_batches)
        batches.add_metric(["closed"], t.batches - t.open_batches)
        yield batches
        reqs = GaugeMetricFamily("sluice_summary_requests", "Summary requests.", labels=["state"])
        reqs.add_metric(["pending"], t.pending_requests)
        reqs.add_metric(["submitted"], t.submitted_requests)
        yield reqs
        if t.budget_usd is not None:
            yield GaugeMetricFamily("sluice_summary_budget_usd", "Summary budget (USD).", value=t.budget_usd)


def metrics_router(state: State) -> APIRouter:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SluiceCollector(state))
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus text format; every value is read when scraped."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router

