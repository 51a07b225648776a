"""Asking the index owner from an HTTP route: the same timeout and the same 422 / 503 everywhere."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from pipelines.errors import PermanentError
from workers import client

QUERY_TIMEOUT_S = 30.0


def ask(name: str, args: tuple[Any, ...] = (), argsrepr: str | None = None) -> Any:
    """Task ``sluice.<name>``'s answer; its permanent refusal is a 422, no answer in time a 503."""
    try:
        return client.ask(name, args, QUERY_TIMEOUT_S, argsrepr)
    except PermanentError as exc:
        raise HTTPException(422, str(exc)) from exc
    except Exception as exc:
        raise HTTPException(503, f"query worker unavailable: {type(exc).__name__}") from exc
