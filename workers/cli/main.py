"""The ``sluice`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipelines import runtime  # noqa: F401  (offline switches first)
from schemas.search import Mode, Scope
from schemas.settings import Settings
from workers.runtime import config
from workers.runtime.flow import PIPELINE_QUEUES, QUERY_QUEUES

app = typer.Typer(help="sluice: event-driven document ingestion and search.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure quality.", no_args_is_help=True)
bench_app = typer.Typer(help="Measure speed (prints JSON).", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")


@eval_app.callback()
@bench_app.callback()
def _private_sluice() -> None:
    """Benchmarks and evaluations start a private sluice: SIGTERM stops it as Ctrl-C does."""
    from workers.launcher.signals import stop_as_on_ctrl_c

    stop_as_on_ctrl_c()


reindex_app = typer.Typer(help="Bulk re-index jobs started by POST /webhooks/reindex.", no_args_is_help=True)
app.add_typer(reindex_app, name="reindex")
from workers.cli.generation import generation_app  # noqa: E402  (sluice generation list|create|compare|switch|...)

app.add_typer(generation_app, name="generation")
from workers.cli.graph import graph_app  # noqa: E402  (sluice graph entities|entity|path|communities|stats)

app.add_typer(graph_app, name="graph")
from workers.cli.dlq import dlq_app  # noqa: E402  (sluice dlq list|show|retry|purge)

app.add_typer(dlq_app, name="dlq")
from workers.launcher.flower import run as flower_run  # noqa: E402

app.command("flower")(flower_run)  # Flower with flower.conf, for containers and other machines


def _settings(**overrides: object):  # type: ignore[no-untyped-def]
    """Apply CLI overrides through the environment, so child processes inherit them."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"SLUICE_{name.upper()}"] = str(value)
    config.settings.cache_clear()
    return config.settings()


def _connect():  # type: ignore[no-untyped-def]
    from workers.cli.support import connect_or_exit

    return connect_or_exit()


_DEFAULTS = Settings.model_fields


def _default(name: str) -> str:
    return str(_DEFAULTS[name].default)


@app.command()
def up(
    inbox: Annotated[Optional[Path], typer.Option(help="Folder to watch.", envvar="SLUICE_INBOX",
                                                  show_default=_default("inbox"))] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="State directory (Redis data, index, logs).",
                                                     envvar="SLUICE_DATA_DIR", show_default=_default("data_dir"))] = None,
    api_port: Annotated[Optional[int], typer.Option(help="HTTP API port.", envvar="SLUICE_API_PORT",
                                                    show_default=_default("api_port"))] = None,
    flower_port: Annotated[Optional[int], typer.Option(help="Flower port.", envvar="SLUICE_FLOWER_PORT",
                                                       show_default=_default("flower_port"))] = None,
    samples: Annotated[bool, typer.Option(help="Ingest the bundled sample documents.")] = True,
) -> None:
    """Start everything on this machine: Redis, workers, query worker, watcher, API and Flower."""
    from workers.launcher.supervisor import run_all

    s = _settings(inbox=inbox, data_dir=data_dir, api_port=api_port, flower_port=flower_port)
    raise typer.Exit(run_all(s, ingest_samples=samples))


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues.")] = ",".join(PIPELINE_QUEUES),
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    name: Annotated[str, typer.Option(help="Worker node name.")] = "pipeline@%h",
) -> None:
    """A pipeline worker (prefork) for the given stage queues."""
    _connect()
    from workers.runtime.app import app as celery_app
    from workers.runtime.dispatch import QUEUES_ENV

    os.environ["SLUICE_WORKER_CONCURRENCY"] = str(concurrency)
    os.environ[QUEUES_ENV] = queues  # stages bound for these queues run in place (workers/runtime/dispatch.py)
    celery_app.worker_main(
        ["worker", "-Q", queues, "-c", str(concurrency), "-n", name, "-E", "--loglevel", "INFO", "--without-gossip"]
    )


@app.command("query-worker")
def query_worker(
    threads: Annotated[int, typer.Option(help="Concurrent searches / index writes.")] = 4,
    name: Annotated[str, typer.Option(help="Worker node name.")] = "query@%h",
    queues: Annotated[Optional[str], typer.Option(help="Comma-separated queues (default: index,query).")] = None,
) -> None:
    """The index owner: applies index writes and answers searches (thread pool, one process)."""
    _connect()
    from workers.runtime.app import app as celery_app
    from workers.runtime.dispatch import QUEUES_ENV

    queues = queues or ",".join(QUERY_QUEUES)
    os.environ[QUEUES_ENV] = queues
    os.environ["SLUICE_WORKER_CONCURRENCY"] = str(threads)  # its threads split the cores (workers/runtime/resources.py)
    celery_app.worker_main(
        ["worker", "-Q", queues, "-P", "threads", "-c", str(threads), "-n", name, "-E",
         "--loglevel", "INFO", "--without-gossip"]
    )


@app.command()
def watch(directory: Annotated[str, typer.Argument(help="Folder, or s3://bucket/prefix, to watch.")]) -> None:
    """Watch a folder or an S3 bucket prefix: reconcile it with the index, then follow its changes."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from workers.client import manifest
    from workers.ingress.admission import Ingress
    from workers.ingress.watcher import FolderWatcher

    st = _connect()
    s = config.settings()
    if directory.startswith("s3://"):  # polls ListObjectsV2; see workers/sources/s3.py
        from workers.ingress.s3_watcher import S3Watcher

        bucket = S3Watcher(directory, Ingress(st, s), s.tenant, s.s3_poll_interval_s, s)
        typer.echo(f"watching {directory}")
        return bucket.run(manifest(bucket.source, timeout_s=300))
    w = FolderWatcher(Path(directory), Ingress(st, s), s.tenant, s.settle_seconds, s.poll_interval_s, manifest)
    typer.echo(f"watching {w.root}")
    w.run(manifest(w.source, timeout_s=300))


@app.command()
def api(
    host: Annotated[Optional[str], typer.Option()] = None,
    port: Annotated[Optional[int], typer.Option()] = None,
) -> None:
    """The HTTP API (search, health)."""
    import uvicorn

    from workers.http.api import create_app

    _connect()
    s = config.settings()
    uvicorn.run(create_app(), host=host or s.api_host, port=port or s.api_port, log_level="warning")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders.")],
    wait: Annotated[bool, typer.Option(help="Block until every event is finished; exit 1 if any document "
                                            "failed (it is in `sluice dlq list`).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object when done.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="With --wait: a line as each document "
                                                                  "finishes.")] = False,
) -> None:
    """Enqueue files or folders (a folder is reconciled: removed files are deleted)."""
    from rich.progress import Progress

    from workers.cli import views
    from workers.client import OUTAGE, OUTAGE_PATIENCE_S, NotRunning, events_for
    from workers.client import ingest as run_ingest

    st = _connect()
    s = config.settings()
    try:
        events = events_for(paths, s)
    except (FileNotFoundError, NotRunning) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    finished = [0]

    def each(key: str, status: str) -> None:
        finished[0] += 1
        typer.echo(views.document_done(key, status, finished[0], len(events)))

    try:
        with Progress(transient=True, disable=as_json or not wait or verbose or not sys.stdout.isatty()) as bar:
            job = bar.add_task("ingesting", total=len(events))
            report = run_ingest(st, s, events, wait, lambda done, total: bar.update(job, completed=done),
                                each if verbose and wait and not as_json else None)
    except OUTAGE as exc:
        typer.echo(f"Redis stayed unreachable for {OUTAGE_PATIENCE_S:.0f}s ({type(exc).__name__}); events already "
                   "queued go on when it is back: see `sluice status`", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.summary()))
    elif wait:
        typer.echo("\n".join(views.report(report)))
    else:
        typer.echo(views.admitted(report.admitted))
    if wait and report.failed:
        n = len(report.failed)
        typer.echo(f"{views.plural(n, 'document')} of this run failed and {'is' if n == 1 else 'are'} in the "
                   "dead-letter store: see `sluice dlq list` (and `sluice dlq retry` once fixed)", err=True)
        raise typer.Exit(1)


_JSON_FIELDS = ("stages", "pii_counts", "chunks", "chunks_embedded", "chunks_reused", "chunks_deleted", "deleted",
                "updated_at")


def _document_status(st, doc_id: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """One document as a person reads it: content hash, stages, chunks and its last event."""
    doc: dict[str, object] = {k: json.loads(v) if k in _JSON_FIELDS else v for k, v in st.document(doc_id).items()}
    out: dict[str, object] = {"doc_id": doc_id, "key": doc.pop("key", None), "content_hash": st.indexed_version(doc_id)}
    out.update(doc)
    last = doc.get("last_event")
    if last:
        info = st.event_info(str(last))
        action = json.loads(info["event"]).get("action") if "event" in info else None
        out["last_event"] = {"event_id": last, "action": action, "status": info.get("status", "expired"),
                             "stage": info.get("stage"), "error": info.get("error") or None}
    return out


@app.command()
def status(
    doc: Annotated[Optional[str], typer.Argument(help="Document id (prefix) or path.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Everything, as JSON.")] = False,
) -> None:
    """Health in one view: queues, workers, in flight, dead letters, index and graph size, last errors;
    or one document's state (JSON)."""
    from workers.query.health import overview

    st = _connect()
    if doc:
        matches = st.find_documents(doc)
        if not matches:
            typer.echo(f"no document matches {doc!r}", err=True)
            raise typer.Exit(1)
        for doc_id in matches:
            typer.echo(json.dumps(_document_status(st, doc_id), indent=2))
        return
    out = overview(st)  # workers/query/health.py
    from workers.followups.batch import status as summary_status

    out["summaries"] = summary_status(st)  # mode, Batch API tokens and cost, budget
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    from workers.cli.views import status as readable

    typer.echo("\n".join(readable(out)))


_FIELD_OPTIONS = {"q": "the query", "filters": "--filter", "k": "--k"}


def _refusal(exc: Exception) -> str:
    """A pydantic ValidationError of the search request, in the command's own words."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    said = []
    for e in exc.errors():
        name = str(e["loc"][0]) if e["loc"] else "the search"
        what = _FIELD_OPTIONS.get(name, "--" + name.replace("_", "-"))
        if name == "q" and e["type"] in ("string_too_short", "value_error"):
            said.append("the query is empty: say what to look for, e.g. sluice search \"sand filter\"")
        else:
            said.append(f"{what}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(said)


DateOpt = Annotated[Optional[str], typer.Option(help="ISO 8601 date or time, e.g. 2026-12-01 or 2026-12-01T09:30Z.")]


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option(min=1, max=100, help="How many results.")] = 10,
    mode: Annotated[Mode, typer.Option(help="How to match.")] = Mode.hybrid,
    scope: Annotated[Scope, typer.Option(help="Search chunks, document summaries, or all.")] = Scope.chunks,
    tenant: Annotated[Optional[str], typer.Option(help="Tenant to search (required when sluice serves several).")] = None,
    doc_id: Annotated[Optional[str], typer.Option(help="Only this document.")] = None,
    file_type: Annotated[Optional[str], typer.Option(help="Extension without dot, e.g. pdf.")] = None,
    prefix: Annotated[Optional[str], typer.Option(help="Start of the document key: a folder (reports/) or any "
                                                       "first characters (water finds waterfall.txt).")] = None,
    filter_: Annotated[Optional[list[str]], typer.Option("--filter", help="field:value on a payload field (doc_id, "
                                                         "tenant, source, key, file_type, ...); repeatable.")] = None,
    created_after: DateOpt = None,
    created_before: DateOpt = None,
    updated_after: DateOpt = None,
    updated_before: DateOpt = None,
    group_by_document: Annotated[bool, typer.Option("--group-by-document", help="Best hit per document.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The hits as JSON, with their raw scores.")] = False,
) -> None:
    """Search the index through the query worker: rank, relevance (relative to the best hit), where, snippet."""
    from celery.exceptions import TimeoutError as NoAnswer
    from pydantic import ValidationError

    from schemas.search import SearchRequest
    from workers.cli.views import hits as readable
    from workers.client import search as run_search

    if any(":" not in f for f in filter_ or []):
        typer.echo("--filter takes field:value, e.g. --filter file_type:pdf", err=True)
        raise typer.Exit(2)
    fields = {"q": query, "k": k, "mode": mode, "scope": scope, "tenant": tenant, "doc_id": doc_id,
              "file_type": file_type, "prefix": prefix, "filters": dict(f.partition(":")[::2] for f in filter_ or []),
              "created_after": created_after, "created_before": created_before, "updated_after": updated_after,
              "updated_before": updated_before, "group_by_document": group_by_document}
    try:
        req = SearchRequest.model_validate(fields)  # dates are parsed here, as the API parses them
    except ValidationError as exc:
        typer.echo(f"cannot search: {_refusal(exc)}", err=True)
        raise typer.Exit(2) from None
    _connect()
    refused: Exception | None = None
    try:
        found = run_search(req)
    except NoAnswer:
        found = None  # leave the except block first: the pending result is cleaned up while Redis is still there
    except Exception as exc:  # the query worker refused it (an unknown tenant, say): its reason, no traceback
        found, refused = None, exc
    if refused is not None:
        typer.echo(f"search refused: {_refusal(refused)}", err=True)
        raise typer.Exit(2)
    if found is None:
        typer.echo("the query worker did not answer within 30s: is `sluice query-worker` running?", err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps([h.model_dump() for h in found]))
        return
    typer.echo("\n".join(readable(found, mode.value)))


@reindex_app.command("status")
def reindex_status(job: Annotated[Optional[str], typer.Argument(help="Job id; default: recent jobs.")] = None) -> None:
    """Progress of bulk re-index jobs (total, submitted, outcomes, errors)."""
    from workers.http.reindex_jobs import job_view

    st = _connect()
    found = [j for j in [st.job(job)] if j] if job else st.jobs()
    if job and not found:
        typer.echo(f"no re-index job {job}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps([job_view(j) for j in found], indent=2))


@reindex_app.command("cancel")
def reindex_cancel(
    job: Annotated[Optional[str], typer.Argument(help="Job id; default: the running job.")] = None,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the job to stop.")] = 30.0,
) -> None:
    """Stop a bulk re-index job; events already submitted finish normally."""
    import time

    st = _connect()
    target = job or st.bulk_job()
    if not target or st.job(target) is None:
        typer.echo("no re-index job is running" if not job else f"no re-index job {job}", err=True)
        raise typer.Exit(1)
    st.cancel_job(target)
    deadline = time.monotonic() + wait
    while (st.job(target) or {}).get("finished_at") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    info = st.job(target) or {}
    typer.echo(f"re-index job {target}: {info.get('status')} after {info.get('submitted')} of {info.get('total')}")


@eval_app.command("pii")
def eval_pii(
    presidio_json: Annotated[Path, typer.Option(help="Labelled sentences (presidio-research format).")],
    split_by_template: Annotated[Optional[int], typer.Option(
        help="Deal templates into K folds; report fold 0 (held out) apart from the rest (tuning).")] = None,
    stock: Annotated[bool, typer.Option(help="Run stock Presidio beside ours.")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Labelled sentences through the real redact stage and stock Presidio: what leaks, per type."""
    from pipelines.pii_eval import StockPresidio, compare, table
    from pipelines.redact import Redactor

    s = config.settings()
    try:
        samples = json.loads(presidio_json.read_text())
        ours = Redactor(s.pseudonym_secret.get_secret_value().encode())
        result = compare(samples, ours, StockPresidio() if stock else None, split_by_template)
    except (OSError, ValueError, KeyError) as exc:
        typer.echo(f"cannot evaluate {presidio_json}: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result))
        return
    for name in ("held_out", "tuning", "all"):
        if name in result:
            typer.echo(f"[{name}]\n{table(result[name])}")


@eval_app.command("retrieval")
def eval_retrieval(
    beir: Annotated[Path, typer.Option(help="BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/test.tsv).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit_queries: Annotated[Optional[int], typer.Option(help="Only the first N judged queries.")] = None,
) -> None:
    """Ingest a BEIR corpus into a private sluice; nDCG@10, Recall@100, MRR@10 per mode and for rank-bm25."""
    from workers.bench.quality import evaluate_retrieval

    result = evaluate_retrieval(beir, limit_queries)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench_app.command("query")
def bench_query(
    chunks: Annotated[int, typer.Option(help="Index size (built once under .sluice/, then reused).")] = 100_000,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search latency through the query worker and the HTTP API, freshness and throughput."""
    from workers.bench.speed import bench_query as run

    result = run(chunks)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench_app.command("burst")
def bench_burst(
    files: Annotated[int, typer.Option(help="Small files dropped at once.")] = 5000,
    bound: Annotated[int, typer.Option(help="max_in_flight and max_queue_depth for the run.")] = 64,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A burst of files: do the queues stay within their bounds? (peak depths, sampled every 10 ms)"""
    from workers.bench.speed import bench_burst as run

    result = run(files, bound)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench_app.command("ingest")
def bench_ingest(
    beir: Annotated[Path, typer.Option(help="BEIR-layout folder (corpus.jsonl).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N documents.")] = None,
    followups: Annotated[bool, typer.Option(help="Also build the entity graph and summaries.")] = True,
    runs: Annotated[int, typer.Option(min=1, help="Repeat on a fresh sluice each time; prints every run and the medians.")] = 1,
) -> None:
    """Ingest a BEIR corpus through the real pipeline and compare with bare sentence-transformers."""
    from workers.bench.speed import bench_ingest as run
    from workers.bench.speed import with_medians

    results = [run(beir, limit, followups) for _ in range(runs)]
    result = results[0] if runs == 1 else with_medians(results)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench_app.command("generation")
def bench_generation(
    beir: Annotated[Path, typer.Option(help="BEIR-layout folder (corpus.jsonl, queries.jsonl).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N documents.")] = None,
) -> None:
    """Build an int8 index generation from an fp32 one: build time against the first ingest, chunks embedded,
    search p95 before and during the build."""
    from workers.bench.generation import bench_generation as run

    result = run(beir, limit)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench_app.command("chaos")
def bench_chaos(
    docs: Annotated[int, typer.Option(help="Generated documents to ingest.")] = 200,
    kills: Annotated[int, typer.Option(help="SIGKILLs of each kind: pipeline child, pipeline worker, query worker, "
                                            "Redis.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the random kill moments.")] = 0,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """An ingest under random SIGKILLs: documents indexed, dead-lettered and lost, duplicates, events left in
    flight, recovery time per kind of kill."""
    from workers.bench.chaos import bench_chaos as run

    result = run(docs, kills, seed)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@app.command()
def beat() -> None:
    """celery beat: the periodic summary-batch tick and graph communities (see workers/runtime/app.py)."""
    _connect()
    from workers.runtime.app import app as celery_app

    schedule = config.settings().data_dir.resolve() / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    celery_app.start(["beat", "-s", str(schedule), "--loglevel", "INFO"])


