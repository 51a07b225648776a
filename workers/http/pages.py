"""The pages a person opens in a browser: the search page at ``/``, and the OpenAPI pages /docs and /redoc.

All of them work with no internet. The search page is one static HTML file shipped in the package
(no build step, no CDN), a client of the API like any other: GET /search and GET /documents/{id}
with the reader's API key, kept in the browser. /docs and /redoc take Swagger UI and ReDoc from the
assets fastapi-offline ships. Each page is sent with a Content-Security-Policy that lets it load
from this server only: ReDoc's bundle asks for its vendor's logo from a CDN on every page, and the
browser refuses that request instead of sending it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi_offline import FastAPIOffline

DOCS_PAGES = ("/docs", "/redoc")
# Swagger UI and ReDoc run inline start-up scripts and styles, and ReDoc a blob: worker; nothing from elsewhere.
LOCAL_ONLY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
              " img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; base-uri 'none';"
              " frame-ancestors 'none'")
SEARCH_PAGE = LOCAL_ONLY.replace("default-src 'self'", "default-src 'none'")


def documented_app(**options: Any) -> FastAPI:
    """A FastAPI app whose /docs and /redoc need no CDN; Swagger UI's validator badge (validator.swagger.io)
    is off, and both pages carry the local-only policy."""
    app = FastAPIOffline(swagger_ui_parameters={"validatorUrl": None}, **options)

    @app.middleware("http")
    async def local_only(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if request.url.path in DOCS_PAGES:
            response.headers["Content-Security-Policy"] = LOCAL_ONLY
        return response

    return app


@cache
def _search_page() -> str:
    return (files("workers.http") / "page" / "index.html").read_text(encoding="utf-8")


def page_router() -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def search_page() -> HTMLResponse:
        """Search from a browser without curl: query, mode, filters, results, the document view."""
        return HTMLResponse(_search_page(), headers={"Content-Security-Policy": SEARCH_PAGE})

    return router
