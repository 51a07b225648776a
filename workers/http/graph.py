"""HTTP routes of the entity graph (``/graph/*``). The graph lives in the query worker; these ask it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from schemas.graph import Community, EntityDetail, GraphPath, GraphStats
from schemas.graph import Entity as EntityOut
from schemas.search import tenant_refusal
from workers.client import why_no_path
from workers.http.asking import ask
from workers.http.auth import Caller
from workers.runtime.config import settings


def _ask(op: str, params: dict[str, Any], who: Caller) -> Any:
    params = {**params, "tenant": who.tenant(params.get("tenant"))}
    if refusal := tenant_refusal(settings().tenants, params.get("tenant")):
        raise HTTPException(422, refusal)
    return ask("graph_query", (op, params), argsrepr=f"({op!r}, <params>)")


def graph_router(caller: Callable[..., Caller]) -> APIRouter:
    """The graph routes; ``caller`` (workers/http/auth.py) decides which tenants a request may read."""
    r = APIRouter(prefix="/graph", tags=["graph"])
    who_asks = Depends(caller)  # a default, not an annotation: postponed annotations cannot see this scope

    @r.get("/entities", response_model=list[EntityOut])
    def entities(
        q: Annotated[str, Query(min_length=1, max_length=500, description="Name, alias or pseudonym.")],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        tenant: str | None = None,
        who: Caller = who_asks,
    ) -> Any:
        """Entity look-up (rank-bm25 over names and aliases)."""
        return _ask("entities", {"q": q, "k": k, "tenant": tenant}, who)

    @r.get("/entities/{entity_id}", response_model=EntityDetail)
    def entity(entity_id: str, tenant: str | None = None, neighbours: Annotated[int, Query(ge=1, le=200)] = 25,
               who: Caller = who_asks) -> Any:
        """One entity: aliases, counts, neighbours and supporting chunks (an id, or a name to look up)."""
        found = _ask("entity", {"id": entity_id, "tenant": tenant, "limit": neighbours}, who)
        if found is None:
            raise HTTPException(404, f"no entity {entity_id}")
        return found

    @r.get("/path", response_model=GraphPath)
    def path(source: Annotated[str, Query(alias="from")], to: str, tenant: str | None = None,
             who: Caller = who_asks) -> Any:
        """Shortest chain of co-occurrences between two entities, with the chunks behind each step."""
        found = _ask("path", {"from": source, "to": to, "tenant": tenant}, who)
        if found is None:
            known = lambda name: _ask("entity", {"id": name, "tenant": tenant, "limit": 1}, who) is not None  # noqa: E731
            raise HTTPException(404, why_no_path(source, to, known, "GET /graph/entities?q={}"))
        return found

    @r.get("/communities", response_model=list[Community])
    def communities(tenant: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    who: Caller = who_asks) -> Any:
        """Louvain communities, largest first (cached until the graph changes)."""
        return _ask("communities", {"tenant": tenant, "limit": limit}, who)

    @r.get("/stats", response_model=GraphStats)
    def stats(tenant: str | None = None, who: Caller = who_asks) -> Any:
        return _ask("stats", {"tenant": tenant}, who)

    return r
