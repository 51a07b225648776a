"""The ``sluice`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipelines import runtime  # noqa: F401  (offline switches first)
from workers import config

app = typer.Typer(help="sluice: event-driven document ingestion and search.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure quality.", no_args_is_help=True)
bench_app = typer.Typer(help="Measure speed (prints JSON).", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")


def _settings(**overrides: object):  # type: ignore[no-untyped-def]
    """Apply CLI overrides through the environment, so child processes inherit them."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"SLUICE_{name.upper()}"] = str(value)
    config.settings.cache_clear()
    return config.settings()


def _connect():  # type: ignore[no-untyped-def]
    from workers.client import NotRunning, connect

    try:
        return connect(config.settings())
    except NotRunning as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


@app.command()
def up(
    inbox: Annotated[Optional[Path], typer.Option(help="Folder to watch.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="State directory.")] = None,
    api_port: Annotated[Optional[int], typer.Option(help="HTTP API port.")] = None,
    flower_port: Annotated[Optional[int], typer.Option(help="Flower port.")] = None,
    samples: Annotated[bool, typer.Option(help="Ingest the bundled sample documents.")] = True,
) -> None:
    """Start everything on this machine: Redis, workers, query worker, watcher, API and Flower."""
    from workers.supervisor import run_all

    s = _settings(inbox=inbox, data_dir=data_dir, api_port=api_port, flower_port=flower_port)
    raise typer.Exit(run_all(s, ingest_samples=samples))


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues.")] = "parse,redact,chunk,embed",
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    name: Annotated[str, typer.Option(help="Worker node name.")] = "pipeline@%h",
) -> None:
    """A pipeline worker (prefork) for the given stage queues."""
    _connect()
    from workers.app import app as celery_app

    os.environ["SLUICE_WORKER_CONCURRENCY"] = str(concurrency)
    celery_app.worker_main(
        ["worker", "-Q", queues, "-c", str(concurrency), "-n", name, "-E", "--loglevel", "INFO", "--without-gossip"]
    )


@app.command("query-worker")
def query_worker(
    threads: Annotated[int, typer.Option(help="Concurrent searches / index writes.")] = 4,
    name: Annotated[str, typer.Option(help="Worker node name.")] = "query@%h",
) -> None:
    """The index owner: applies index writes and answers searches (thread pool, one process)."""
    _connect()
    from workers.app import QUERY_QUEUES
    from workers.app import app as celery_app

    celery_app.worker_main(
        ["worker", "-Q", ",".join(QUERY_QUEUES), "-P", "threads", "-c", str(threads), "-n", name, "-E",
         "--loglevel", "INFO", "--without-gossip"]
    )


@app.command()
def watch(directory: Annotated[Path, typer.Argument(help="Folder to watch.")]) -> None:
    """Watch a folder: reconcile it with the index, then follow its changes."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from workers.client import manifest
    from workers.ingress import Ingress
    from workers.watcher import FolderWatcher

    st = _connect()
    s = config.settings()
    w = FolderWatcher(directory, Ingress(st, s), s.tenant, s.settle_seconds, s.poll_interval_s)
    typer.echo(f"watching {w.root}")
    w.run(manifest(w.source, timeout_s=300))


@app.command()
def api(
    host: Annotated[Optional[str], typer.Option()] = None,
    port: Annotated[Optional[int], typer.Option()] = None,
) -> None:
    """The HTTP API (search, health)."""
    import uvicorn

    from workers.api import create_app

    _connect()
    s = config.settings()
    uvicorn.run(create_app(), host=host or s.api_host, port=port or s.api_port, log_level="warning")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders.")],
    wait: Annotated[bool, typer.Option(help="Block until every event is finished.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object when done.")] = False,
) -> None:
    """Enqueue files or folders (a folder is reconciled: removed files are deleted)."""
    from dataclasses import asdict

    from rich.progress import Progress

    from workers.client import NotRunning, events_for
    from workers.client import ingest as run_ingest

    st = _connect()
    s = config.settings()
    try:
        events = events_for(paths, s)
    except (FileNotFoundError, NotRunning) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    with Progress(transient=True, disable=as_json or not wait) as bar:
        job = bar.add_task("ingesting", total=len(events))
        report = run_ingest(st, s, events, wait, lambda done, total: bar.update(job, completed=done))
    if as_json:
        typer.echo(json.dumps(asdict(report)))
    elif wait:
        typer.echo(
            f"{report.documents} documents: {report.indexed} indexed, {report.unchanged} unchanged, "
            f"{report.deleted} deleted, {len(report.failed)} failed; {report.chunks_embedded} chunks embedded, "
            f"{report.chunks_reused} reused, {report.chunks_deleted} deleted in {report.elapsed_s:.1f}s"
        )
        for f in report.failed:
            typer.echo(f"  failed {f['path']} at {f['stage']}: {f['error']}")
    else:
        typer.echo(f"queued {len(events)} events")


@app.command()
def status(doc: Annotated[Optional[str], typer.Argument(help="Document id (prefix) or path.")] = None) -> None:
    """Queue depths, in-flight events, dead letters; or one document's state."""
    from workers.app import ALL_QUEUES

    st = _connect()
    if doc:
        matches = st.find_documents(doc)
        if not matches:
            typer.echo(f"no document matches {doc!r}", err=True)
            raise typer.Exit(1)
        for doc_id in matches:
            typer.echo(json.dumps({"doc_id": doc_id, **st.document(doc_id)}, indent=2))
        return
    out = {
        "queues": {q: st.queue_depth(q) for q in ALL_QUEUES},
        "in_flight": st.in_flight(),
        "dead_letters": len(st.dead_letters()),
        "counters": st.counters(),
        "last_errors": [{k: d[k] for k in ("key", "stage", "error")} for d in st.dead_letters()[-5:]],
    }
    typer.echo(json.dumps(out, indent=2))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option(min=1, max=100)] = 10,
    mode: Annotated[str, typer.Option(help="hybrid | dense | lexical")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Search the index through the query worker."""
    from schemas.search import SearchRequest
    from workers.client import search as run_search

    _connect()
    hits = run_search(SearchRequest(q=query, k=k, mode=mode))
    if as_json:
        typer.echo(json.dumps([h.model_dump() for h in hits]))
        return
    for i, h in enumerate(hits, 1):
        where = h.key + (f" p.{h.page}" if h.page else "") + (f" § {h.section}" if h.section else "")
        typer.echo(f"{i:2}. {h.score:.4f}  {where}  [{h.doc_id[:12]}]\n    {h.text[:200]!s}")


@eval_app.command("pii")
def eval_pii(
    presidio_json: Annotated[Path, typer.Option(help="Labelled sentences (presidio-research format).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run labelled sentences through the real redact stage and count what leaks."""
    from pipelines.pii_eval import evaluate
    from pipelines.redact import Redactor

    s = config.settings()
    result = evaluate(json.loads(presidio_json.read_text()), Redactor(s.pseudonym_secret.get_secret_value().encode()))
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


@bench_app.command("ingest")
def bench_ingest(
    beir: Annotated[Path, typer.Option(help="BEIR-layout folder (corpus.jsonl).")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N documents.")] = None,
) -> None:
    """Ingest a BEIR corpus through the real pipeline and compare with bare sentence-transformers."""
    from workers.bench import bench_ingest as run

    result = run(beir, limit)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(app())
