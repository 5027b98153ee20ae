"""The application: routes, error answers, static files and the guard, around one :class:`IndexState`."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vadindex import __version__
from vadindex import config as C
from vadindex.errors import InputError, ModelError, StoreError, VadindexError
from vadindex.web import api, pages
from vadindex.web.search import TooLarge
from vadindex.web.security import Guard, wants_json
from vadindex.web.state import IndexState, NotFound

log = logging.getLogger("vadindex")

STATIC = Path(__file__).resolve().parent / "static"
#: Multipart framing around an upload of the largest allowed image.
FORM_OVERHEAD = 256 * 1024


class _Static(StaticFiles):
    """The package's scripts and styles; browsers may keep them for an hour (URLs carry the version)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response


def create_app(
    index: str | os.PathLike[str] | IndexState,
    *,
    token: str | None = None,
    check_host: bool | None = None,
    **state_options: Any,
) -> FastAPI:
    """The web app over one index.

    Args:
        index: the index folder, or an :class:`IndexState` (whose options then apply).
        token: the token every request must carry; ``None`` for none (loopback only).
        check_host: refuse requests whose ``Host`` is not this machine; by default when there is no
            token (so that a DNS name re-pointed at 127.0.0.1 cannot reach an open server).
        state_options: :class:`IndexState` options (``video_root``, ``thumbnail_size``,
            ``annotations``, ``annotation_format``, ``device``).

    Returns:
        A FastAPI application (run it with uvicorn, or :func:`vadindex.web.server.serve`).
    """
    state = index if isinstance(index, IndexState) else IndexState(index, **state_options)
    app = FastAPI(
        title="vadindex",
        version=__version__,
        description="Search and review an index of video segments. Every request needs the server's "
        "token when it has one (X-Token or Authorization: Bearer header, or the cookie of the ?token= link).",
        docs_url=None,  # the interactive docs load their scripts from a CDN: not here
        redoc_url=None,
        openapi_url="/openapi.json",
        telemetry={"auto_configure": False},  # never export anything, whatever the environment says
    )
    app.state.index = state
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", _Static(directory=STATIC), name="static")
    _error_answers(app)
    app.add_middleware(
        Guard, token=token, max_body=C.SERVE_MAX_UPLOAD_BYTES + FORM_OVERHEAD,
        check_host=token is None if check_host is None else check_host, error_page=pages.error_page,
    )  # fmt: skip
    return app


def _answer(request: Request, status: int, detail: str) -> Response:
    """``{"detail": ...}`` for the API, a small page for pages."""
    if wants_json(request.scope):
        return JSONResponse({"detail": detail}, status_code=status)
    return pages.render(None, "error.html.j2", status=status, status_code=status, message=detail)


def _error_answers(app: FastAPI) -> None:
    """Every error becomes a one-line 4xx (or 503) answer; an unexpected one a 500 without a traceback."""

    @app.exception_handler(VadindexError)
    async def vadindex_error(request: Request, exc: VadindexError) -> Response:
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, TooLarge):
            status = 413
        elif isinstance(exc, InputError):
            status = 400
        elif isinstance(exc, (StoreError, ModelError)):
            log.error("%s", exc)
            status = 503
        else:
            status = 400
        return _answer(request, status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = "no such page or resource"
        response = _answer(request, exc.status_code, detail)
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, exc: RequestValidationError) -> Response:
        return _answer(request, 400, validation_message(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _answer(request, 500, "internal error (the server's log says more)")


def validation_message(exc: RequestValidationError) -> str:
    """FastAPI's validation errors as one line: ``k: Input should be less than or equal to 1000 (got '5000')``."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(x) for x in error.get("loc", ()) if x not in ("query", "body", "path", "params"))
        got = error.get("input")
        shown = (
            f" (got {str(got)[:40]!r})"
            if isinstance(got, (str, int, float)) and error.get("type") != "missing"
            else ""
        )
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}{shown}")
    return "; ".join(parts)
