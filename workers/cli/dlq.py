"""``sluice dlq list|show|retry|purge``: the dead-letter store from the command line (see workers/ingress/dead_letters.py)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, Optional

import typer

dlq_app = typer.Typer(help="Dead letters: documents that failed permanently, with stage and reason.",
                      no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _state():  # type: ignore[no-untyped-def]
    from workers.cli.support import connect_or_exit

    return connect_or_exit()


def _letter(state: Any, letter_id: str) -> dict[str, Any]:
    from workers.ingress.dead_letters import find

    letter = find(state, letter_id)
    if letter is None:
        typer.echo(f"no dead letter {letter_id!r} (see `sluice dlq list`)", err=True)
        raise typer.Exit(1)
    return letter


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@dlq_app.command("list")
def list_letters(as_json: JsonOpt = False) -> None:
    """Every dead letter, oldest first: id, age, stage, document, reason, and the document's state now."""
    from workers.ingress.dead_letters import view

    state = _state()
    letters = [view(state, d) for d in state.dead_letters()]
    if as_json:
        typer.echo(json.dumps(letters, indent=2))
        return
    if not letters:
        typer.echo("no dead letters")
        return
    for d in letters:
        typer.echo(f"{d['id']}  {_age(d['age_s']):>4}  {d['stage']:<14} {d['key']}  [now {d['document_now']}]\n"
                   f"    {d['error'][:300]}")


@dlq_app.command("show")
def show(letter_id: Annotated[str, typer.Argument(help="Letter id (or a unique prefix).")]) -> None:
    """One dead letter with its event and the document's current status."""
    from workers.ingress.dead_letters import view

    state = _state()
    letter = _letter(state, letter_id)
    out = view(state, letter)
    out["event"] = state.event_info(letter["event_id"]) or "expired"
    if isinstance(out["event"], dict) and "event" in out["event"]:
        out["event"]["event"] = json.loads(out["event"]["event"])
    out["document"] = state.document(letter["doc_id"]) if letter.get("doc_id") else {}
    typer.echo(json.dumps(out, indent=2, default=str))


@dlq_app.command("retry")
def retry(
    letter_id: Annotated[Optional[str], typer.Argument(help="Letter id (or a unique prefix).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every dead letter.")] = False,
    wait: Annotated[bool, typer.Option(help="Wait until each retried document is finished.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-read the document as it is now and send it through the pipeline again (forced).

    A letter is removed once its document is on its way; a new failure leaves a new letter.
    """
    from workers.ingress import dead_letters as dlq
    from workers.ingress.admission import Ingress
    from workers.runtime import config

    if bool(letter_id) == all_:
        typer.echo("name one letter id, or --all", err=True)
        raise typer.Exit(2)
    state = _state()
    letters = state.dead_letters() if all_ else [_letter(state, letter_id or "")]
    ingress = Ingress(state, config.settings())
    started = time.monotonic()
    results = [dlq.retry(state, ingress, d) for d in letters]
    if wait:
        dlq.wait(state, results)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        for r in results:
            verdict = r.get("status") or r["outcome"]
            why = f" ({r['error']})" if r.get("error") else ""
            again = f"; new letter {r['new_letter']}" if r.get("new_letter") else ""
            typer.echo(f"{r['letter']}  {r['key']}: {verdict}{why}{again}")
        if wait:
            typer.echo(f"{len(results)} retried in {time.monotonic() - started:.1f}s")
    failed = [r for r in results if r["outcome"] == "not retried" or r.get("status") in ("failed", "still running")]
    if failed:
        raise typer.Exit(1)


@dlq_app.command("purge")
def purge(yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Delete every dead letter (the documents' failure records stay: unchanged content is not re-parsed)."""
    state = _state()
    n = len(state.dead_letters())
    if n and not yes and not typer.confirm(f"delete {n} dead letters?"):
        raise typer.Exit(1)
    typer.echo(f"purged {state.purge_dead_letters()} dead letters")
