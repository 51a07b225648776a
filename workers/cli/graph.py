"""``sluice graph ...``: the entity graph from the command line (mirrors ``/graph/*``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

graph_app = typer.Typer(help="Browse the entity graph (held by the query worker).", no_args_is_help=True)
TenantOpt = Annotated[str | None, typer.Option(help="Tenant (multi-tenant mode).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _ask(op: str, params: dict[str, Any], timeout_s: float = 60.0) -> Any:
    from workers.cli.support import connect_or_exit
    from workers.client import ask

    connect_or_exit()
    try:
        return ask("graph_query", (op, params), timeout_s, argsrepr=f"({op!r}, <params>)")
    except Exception as exc:
        typer.echo(f"the query worker did not answer: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from exc


def _print(value: Any, as_json: bool, lines: list[str]) -> None:
    typer.echo(json.dumps(value, indent=2) if as_json else "\n".join(lines))


@graph_app.command("entities")
def entities(query: str, k: int = 10, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Find entities by name, alias or pseudonym."""
    found = _ask("entities", {"q": query, "k": k, "tenant": tenant})
    _print(found, as_json, [f"{e['score']:7.2f}  {e['id']:<32} {e['type']:<8} {e['name']}  "
                            f"({e['mentions']} mentions, {e['documents']} docs)" for e in found] or ["no entity found"])


@graph_app.command("entity")
def entity(entity: str, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """One entity (id or name): aliases, neighbours and supporting chunks."""
    found = _ask("entity", {"id": entity, "tenant": tenant})
    if found is None:
        typer.echo(f"no entity {entity}", err=True)
        raise typer.Exit(1)
    e = found["entity"]
    lines = [f"{e['name']} [{e['id']}] {e['type']}: {e['mentions']} mentions in {e['documents']} documents",
             f"  aliases: {', '.join(e['aliases'])}"] + ([f"  dates: {', '.join(e['dates'])}"] if e["dates"] else [])
    lines += ["  neighbours:"] + [f"    {n['weight']:4}  {n['entity']['name']} [{n['entity']['id']}]" for n in found["neighbours"]]
    lines += ["  relations:"] + [_relation(e["name"], r) for r in found["relations"]] if found["relations"] else []
    lines += ["  chunks:"] + [f"    {c['key']} #{c['position']}: {(c['text'] or '')[:120]}" for c in found["chunks"]]
    _print(found, as_json, lines)


def _relation(name: str, r: dict[str, Any]) -> str:
    """"Globex supplies Springfield" whichever end the entity is on."""
    other = f"{r['entity']['name']} [{r['entity']['id']}]"
    said = f"{name} {r['predicate']} {other}" if r["direction"] == "out" else f"{other} {r['predicate']} {name}"
    return f"    {r['weight']:4}  {said}"


@graph_app.command("path")
def path(source: str, target: str, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Shortest chain of co-occurrences between two entities."""
    found = _ask("path", {"from": source, "to": target, "tenant": tenant})
    if found is None:
        typer.echo(_no_path(source, target, tenant), err=True)
        raise typer.Exit(1)
    names = {e["id"]: e["name"] for e in found["entities"]}
    lines = [" -> ".join(e["name"] for e in found["entities"])]
    for s in found["steps"]:
        where = "; ".join(f"{c['key']} #{c['position']}" for c in s["chunks"])
        lines.append(f"  {names[s['source']]} - {names[s['target']]} ({s['weight']} chunks: {where})")
    _print(found, as_json, lines)


def _no_path(source: str, target: str, tenant: str | None) -> str:
    from workers.client import why_no_path

    return why_no_path(source, target, lambda name: _ask("entity", {"id": name, "tenant": tenant, "limit": 1})
                       is not None, "`sluice graph entities {}`")


@graph_app.command("communities")
def communities(limit: int = 20, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Louvain communities, largest first."""
    found = _ask("communities", {"limit": limit, "tenant": tenant}, timeout_s=300)
    _print(found, as_json, [f"{c['id']:3} ({c['size']}): " + ", ".join(e["name"] for e in c["entities"]) for c in found])


@graph_app.command("stats")
def stats(tenant: TenantOpt = None) -> None:
    """Documents, entities and edges in the graph, and how long it took to load."""
    typer.echo(json.dumps(_ask("stats", {"tenant": tenant}), indent=2))


@graph_app.command("bench-load")
def bench_load(edges: int = 100_000, as_json: JsonOpt = False) -> None:
    """Build a synthetic graph with this many edges in a temporary store, then time loading it (JSON)."""
    from workers.bench.graph import bench

    result = bench(edges)
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))
