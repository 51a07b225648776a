"""``sluice generation ...``: index generations (pipelines/generations.py) from the command line.

An index generation is a complete vector space: an embedder, its chunking settings and its
own shard or collection. ``create`` builds one from the chunks already indexed (nothing is
parsed or redacted again) while ingestion and searches go on; ``compare`` checks it against
the live one; ``switch`` makes it live in one step; ``rollback`` goes back; ``drop`` removes one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

generation_app = typer.Typer(help="Index generations: build, compare, switch, roll back, drop.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _ask(op: str, params: dict[str, Any] | None = None, timeout_s: float = 600.0) -> dict[str, Any]:
    from workers.cli.support import connect_or_exit
    from workers.client import ask

    connect_or_exit()
    try:
        answer: dict[str, Any] = ask("generation", (op, params or {}), timeout_s)
    except Exception as exc:
        typer.echo(f"the query worker did not answer: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from exc
    if "refused" in answer:
        typer.echo(answer["refused"], err=True)
        raise typer.Exit(1)
    return answer


def _line(g: dict[str, Any]) -> str:
    live = "*" if g["live"] else " "
    progress = f" {g['copied']}/{g['documents']} documents" if g["status"] == "building" else ""
    gate = ""
    if g.get("gate"):
        gate = f"  gate {'passed' if g['gate']['passed'] else 'FAILED'} ({g['gate']['candidate']:.3f} vs {g['gate']['live']:.3f})"
    error = f"  {g['error']}" if g.get("error") else ""
    return f"{live} {g['name']:<4} {g['status']:<9} {g['space']:<24} {g['backend']:<10} {g['chunks']:>8} chunks{progress}{gate}{error}"


@generation_app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every generation, its vector space, size and state; * marks the live one."""
    found = _ask("list")
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for g in found["generations"].values():
        typer.echo(_line(g))
    if found.get("mismatch"):
        typer.echo(f"note: {found['mismatch']}")


@generation_app.command("create")
def create(
    embed_backend: Annotated[str | None, typer.Option(help="auto, onnx-int8, onnx or torch (default: the configured one).")] = None,
    wait: Annotated[bool, typer.Option(help="Show progress until the build ends (--no-wait: return at once).")] = True,
) -> None:
    """Build a new generation from the chunks in the live one, beside live traffic."""
    made = _ask("create", {"backend": embed_backend})
    typer.echo(f"building generation {made['name']} ({made['space']}, {made['backend']})")
    if not wait:
        return
    while True:
        g = _ask("list")["generations"][made["name"]]
        typer.echo(f"\r  {g['copied']}/{g['documents']} documents, {g['embedded']} chunks embedded", nl=False)
        if g["status"] != "building":
            typer.echo("")
            if g["status"] == "failed":
                typer.echo(f"the build failed: {g['error']}", err=True)
                raise typer.Exit(1)
            typer.echo(f"generation {g['name']} is ready: sluice generation compare, then sluice generation switch")
            return
        time.sleep(1.0)


@generation_app.command("compare")
def compare(
    name: Annotated[str | None, typer.Argument(help="Generation (default: the newest one not live).")] = None,
    probes: Annotated[int, typer.Option(help="Chunks whose own text is searched for in both generations.")] = 200,
    beir: Annotated[Path | None, typer.Option(help="A BEIR-layout folder (queries.jsonl, qrels/test.tsv) judging the "
                                                   "indexed documents, named by corpus id: gate on nDCG@10.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The gate before a switch: as good as the live generation on your judged queries, or (without them)
    finding each sampled chunk by its own text as often."""
    judged = None
    if beir is not None:
        from workers.bench.quality import load_jsonl, load_qrels

        queries = {q: str(rec["text"]) for q, rec in load_jsonl(beir / "queries.jsonl").items()}
        judged = {"queries": queries, "qrels": load_qrels(beir / "qrels" / "test.tsv")}
    gate = _ask("compare", {"name": name, "probes": probes, "judged": judged})
    if as_json:
        typer.echo(json.dumps(gate, indent=2))
    else:
        verdict = "passed" if gate["passed"] else "FAILED"
        typer.echo(f"{gate['generation']} vs {gate['against']} ({gate['measure']}, {gate['probes']} "
                   f"{'queries' if beir else 'chunks'}): {gate['candidate']:.3f} vs {gate['live']:.3f}: {verdict}")
    if not gate["passed"]:
        raise typer.Exit(1)


@generation_app.command("switch")
def switch(
    name: Annotated[str | None, typer.Argument(help="Generation (default: the newest one not live).")] = None,
    force: Annotated[bool, typer.Option(help="Switch although it was not compared, or failed the comparison.")] = False,
) -> None:
    """Make a generation live, in one step (searches never see an empty or half index)."""
    done = _ask("switch", {"name": name, "force": force})
    typer.echo(f"live: {done['live']} (previous: {done['previous']}; sluice generation rollback goes back)")


@generation_app.command("rollback")
def rollback() -> None:
    """Make the previous generation live again (while it exists)."""
    done = _ask("rollback")
    typer.echo(f"live: {done['live']} (previous: {done['previous']})")


@generation_app.command("drop")
def drop(name: Annotated[str, typer.Argument(help="A generation that is not live.")]) -> None:
    """Remove a generation and its shard or collection."""
    typer.echo(f"dropped {_ask('drop', {'name': name})['dropped']}")
