"""HTTP API. It holds no index: searches and document look-ups go to the query worker over Celery."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from schemas.document_view import DocumentChunk, DocumentStatus, DocumentSummary, DocumentView
from schemas.search import FILTERABLE, Mode, Scope, SearchRequest, SearchResponse, tenant_refusal
from workers import client
from workers.http import auth
from workers.http.asking import ask
from workers.http.graph import graph_router
from workers.http.metrics import metrics_router
from workers.http.pages import documented_app, page_router
from workers.http.webhooks import webhook_router
from workers.runtime import dispatch, tracing
from workers.runtime.config import settings

ECHO_CHARS = 100  # of a bad value, echoed in a 422: enough to recognise it, never the whole request
SEARCH_PARAMS = set(SearchRequest.model_fields) - {"filters"} | {"filter"}


def _about(field: str) -> Any:
    """A GET /search query parameter described as the SearchRequest field it fills (one wording for both)."""
    return Query(description=SearchRequest.model_fields[field].description)


def _validated(fields: dict[str, Any]) -> SearchRequest:
    """Build a request; pydantic's errors become the same 422 FastAPI gives for bad parameters."""
    try:
        req = SearchRequest(**fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from exc
    if refusal := tenant_refusal(settings().tenants, req.tenant):
        kind = "value_error" if req.tenant else "missing"
        raise RequestValidationError([{"loc": ["query", "tenant"], "msg": refusal, "type": kind}])
    return req


def _printable(value: Any) -> Any:
    """A value a JSON response can carry: strings cut short and lone surrogates escaped, containers dropped."""
    if isinstance(value, str):
        cut = value if len(value) <= ECHO_CHARS else value[:ECHO_CHARS] + "..."
        return cut.encode("utf-8", "backslashreplace").decode("utf-8")
    return value if value is None or isinstance(value, (bool, int, float)) else None


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 with what is wrong and where, echoing at most the start of a bad value.

    FastAPI's own handler echoes the whole input (a 1 MB query came back whole) and
    fails with a 500 on a lone surrogate, which JSON cannot carry as UTF-8."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {"loc": [_printable(p) for p in e.get("loc", ())], "msg": _printable(str(e.get("msg", ""))),
         "type": _printable(str(e.get("type", ""))), **({"input": _printable(e["input"])} if "input" in e else {})}
        for e in errors
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def create_app() -> FastAPI:
    # /docs and /redoc from installed assets: they work behind a firewall
    api = documented_app(title="sluice", version="0.1.0", description="Search what sluice has indexed.")
    api.add_exception_handler(RequestValidationError, _invalid)
    state = client.connect(settings())
    caller = auth.caller_of(settings())  # refuses tenants without keys
    who_asks = Depends(caller)  # a default, not an annotation: postponed annotations cannot see this scope
    api.include_router(webhook_router(state, settings()))  # POST /webhooks/reindex, /webhooks/s3
    api.include_router(metrics_router(state))  # GET /metrics (Prometheus; read from Redis when scraped)
    api.include_router(graph_router(caller))  # GET /graph/entities, /graph/entities/{id}, /graph/path, ...
    api.include_router(page_router())  # GET /: the search page (static; it calls /search with the reader's key)
    tracing.instrument_api(api)  # server spans, so a search's trace starts at the request (only when OTEL_* ask)

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        """The API process is alive."""
        return {"status": "ok"}

    @api.get("/readyz")
    def readyz() -> JSONResponse:
        """Redis and the index (through the query worker) both answer."""
        checks: dict[str, Any] = {}
        try:
            state.r.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
        try:
            checks["index"] = dispatch.publish("ping").get(timeout=5)
        except Exception as exc:
            checks["index"] = f"unreachable: {type(exc).__name__}"
        ready = checks["redis"] == "ok" and isinstance(checks["index"], dict)
        return JSONResponse({"status": "ready" if ready else "unavailable", **checks}, status_code=200 if ready else 503)

    def run(req: SearchRequest) -> SearchResponse:
        started = time.perf_counter()
        raw = ask("search", (req.model_dump(mode="json"),), argsrepr="(<query>)")
        took = (time.perf_counter() - started) * 1e3
        return SearchResponse(query=req.q, mode=req.mode, hits=raw, took_ms=took)

    @api.get("/search", response_model=SearchResponse)
    def search_get(
        request: Request,
        q: Annotated[str, _about("q")],
        k: Annotated[int, _about("k")] = 10,
        mode: Annotated[Mode, _about("mode")] = Mode.hybrid,
        tenant: Annotated[str | None, _about("tenant")] = None,
        doc_id: Annotated[str | None, _about("doc_id")] = None,
        file_type: Annotated[str | None, _about("file_type")] = None,
        prefix: Annotated[str | None, _about("prefix")] = None,
        created_after: Annotated[datetime | None, _about("created_after")] = None,
        created_before: Annotated[datetime | None, _about("created_before")] = None,
        updated_after: Annotated[datetime | None, _about("updated_after")] = None,
        updated_before: Annotated[datetime | None, _about("updated_before")] = None,
        group_by_document: Annotated[bool, _about("group_by_document")] = False,
        scope: Annotated[Scope, _about("scope")] = Scope.chunks,
        filter: Annotated[list[str], Query(description="field:value on a payload keyword field, repeatable"
                                           f" ({', '.join(FILTERABLE)}).")] = [],  # noqa: B006
        who: auth.Caller = who_asks,
    ) -> SearchResponse:
        tenant = who.tenant(tenant)
        unknown = sorted(set(request.query_params) - SEARCH_PARAMS)
        if unknown:
            raise RequestValidationError(
                [{"loc": ["query", u], "msg": "unknown parameter", "type": "extra_forbidden"} for u in unknown]
            )
        pairs = [f.split(":", 1) for f in filter]
        if any(len(p) != 2 for p in pairs):
            raise RequestValidationError([{"loc": ["query", "filter"], "msg": "use field:value", "type": "value_error"}])
        fields = {k_: v for k_, v in locals().items() if k_ in SearchRequest.model_fields and v is not None}
        return run(_validated({**fields, "filters": dict(pairs)}))

    @api.post("/search", response_model=SearchResponse)
    def search_post(body: dict[str, Any], who: auth.Caller = who_asks) -> SearchResponse:
        asked = body.get("tenant")
        if asked is None or isinstance(asked, str):  # anything else is pydantic's 422
            body = {**body, "tenant": who.tenant(asked)}
        return run(_validated(body))

    @api.get("/documents/{doc_id}", response_model=DocumentView)
    def get_document(doc_id: str, tenant: str | None = None, who: auth.Caller = who_asks) -> DocumentView:
        """Status (typed counts, ISO times), summary and chunks of one document."""
        tenant = who.tenant(tenant)
        status = state.document(doc_id)
        chunks = ask("document", (doc_id,))
        if not status and not chunks:
            raise HTTPException(404, f"no document {doc_id}")
        owner = chunks[0].get("tenant") if chunks else status.get("tenant")
        if settings().tenants and owner != tenant or not who.may_read(owner):
            raise HTTPException(404, f"no document {doc_id}")  # never confirm another tenant's document
        return DocumentView(doc_id=doc_id, status=DocumentStatus.of(status), summary=DocumentSummary.of(status),
                            chunks=[DocumentChunk.of(c) for c in chunks])

    return api
