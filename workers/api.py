"""HTTP API. It holds no index: searches go to the query worker over Celery."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse

from schemas.search import Mode, SearchRequest, SearchResponse
from workers import client
from workers.config import settings


def create_app() -> FastAPI:
    api = FastAPI(title="sluice", version="0.1.0", description="Search what sluice has indexed.")
    state = client.connect(settings())

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            state.r.ping()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "redis": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready", "redis": "ok"})

    def run(req: SearchRequest) -> SearchResponse:
        import time

        started = time.perf_counter()
        try:
            hits = client.search(req, timeout_s=30)
        except Exception as exc:
            raise HTTPException(503, f"query worker unavailable: {type(exc).__name__}") from exc
        return SearchResponse(query=req.q, mode=req.mode, hits=hits, took_ms=(time.perf_counter() - started) * 1e3)

    @api.get("/search", response_model=SearchResponse)
    def search_get(
        q: Annotated[str, Query(min_length=1, max_length=2000)],
        k: Annotated[int, Query(ge=1, le=100)] = 10,
        mode: Mode = Mode.hybrid,
        tenant: str | None = None,
        doc_id: str | None = None,
    ) -> SearchResponse:
        return run(SearchRequest(q=q, k=k, mode=mode, tenant=tenant, doc_id=doc_id))

    @api.post("/search", response_model=SearchResponse)
    def search_post(req: SearchRequest) -> SearchResponse:
        return run(req)

    return api
