"""The pages: search, a segment, review, a video, and the index. Server-rendered, autoescaped jinja2
templates (``templates/``) with a little plain JavaScript (``static/``); a page's state is its URL.

Pictures and video come from the API (``/api/segments/{id}/thumbnail``, ``/api/videos/{id}/stream``);
the review page scores through ``/api/review`` without reloading.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vadindex import __version__
from vadindex import config as C
from vadindex.detect.prompts import builtin_prompt_sets
from vadindex.errors import InputError
from vadindex.index.info import index_info
from vadindex.index.manifest import FAILURES
from vadindex.report.page import number, percent, seconds
from vadindex.web import api
from vadindex.web.params import option_controls
from vadindex.web.search import (
    Search,
    events_of,
    image_vector,
    search_like,
    search_text,
    search_upload,
)
from vadindex.web.state import IndexState, NotFound

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Thumbnails on a video's page, spread over the video.
VIDEO_THUMBNAILS = 16
#: Rows of the last build's failures shown on the index page.
FAILURES_SHOWN = 200

router = APIRouter(include_in_schema=False)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,  # every template: video names and prompts come from users
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(num=number, pct=percent, secs=seconds)


def render(request: Request | None, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page from a template, with what every page shows (the index, the model, the version)."""
    if request is not None:
        state: IndexState = request.app.state.index
        view = state.view()
        context.setdefault("index_name", state.path.name or str(state.path))
        context.setdefault("model", view.manifest.identity.describe())
        context.setdefault("generation", view.generation)
    context.setdefault("index_name", "")
    context.setdefault("model", "")
    context.setdefault("generation", 0)
    context.setdefault("nav", "")
    context.setdefault("version", __version__)
    return HTMLResponse(_env.get_template(template).render(**context), status_code=status)


def error_page(status: int, message: str) -> str:
    """A small page for an error (outside a route: a missing token, a bad Host)."""
    return render(None, "error.html.j2", status=status, status_code=status, message=message).body.decode()


def _state(request: Request) -> IndexState:
    return request.app.state.index


# -- search ------------------------------------------------------------------------------------


@router.get("/")
@router.get("/search")
def search_page(request: Request) -> Response:
    """The search page: a text box and an image upload, k, a video filter; results as cards."""
    q = request.query_params
    text, like, image = q.get("text"), q.get("like"), q.get("image")
    video = q.get("video") or ""
    view_mode = "segments" if q.get("view") == "segments" else "events"
    form = {
        "text": text or "",
        "k": q.get("k") or str(C.DEFAULT_TOP_K_RESULTS),
        "video": video,
        "view": view_mode,
    }
    context: dict[str, Any] = {
        "form": form,
        "nav": "search",
        "max_k": C.SERVE_MAX_K,
        "max_text": C.SERVE_MAX_TEXT,
    }
    if not (text or like or image):
        return render(request, "search.html.j2", results=None, error=None, **context)
    state = _state(request)
    loading = not state.model_loaded
    t = time.perf_counter()
    try:
        k = _int(form["k"], "k")
        if like:
            rows = search_like(state, like, k, video)
            view = state.view()
            ref = api.segment_details(view, view.require_segment(like))
            what = f"{ref['video']} at {seconds(ref['start'])} – {seconds(ref['end'])} (more like this)"
        elif image:
            rows = search_upload(state, image, k, video)
            what = "the uploaded image"
        else:
            rows = search_text(state, text or "", k, video)
            what = f"“{text}”"
    except NotFound as exc:
        return render(request, "search.html.j2", status=404, results=None, error=str(exc), **context)
    except InputError as exc:
        return render(request, "search.html.j2", status=400, results=None, error=str(exc), **context)
    result = Search(rows, what, time.perf_counter() - t, like, loaded_model=loading and state.model_loaded)
    kept = {name: value for name, value in q.items() if name in ("text", "like", "image", "k", "video")}
    other = "segments" if view_mode == "events" else "events"
    return render(request, "search.html.j2", results=result, events=events_of(rows), error=None,
                  back=urlencode({**kept, "view": view_mode}), toggle=urlencode({**kept, "view": other}),
                  **context)  # fmt: skip


@router.post("/search")
def search_upload_page(
    request: Request,
    image: Annotated[UploadFile, File()],
    k: Annotated[str, Form(max_length=10)] = str(C.DEFAULT_TOP_K_RESULTS),
    video: Annotated[str, Form(max_length=C.SERVE_MAX_TEXT)] = "",
) -> Response:
    """An image upload: encode it, keep its vector, and send the browser to a search URL naming it."""
    state = _state(request)
    data = image.file.read(C.SERVE_MAX_UPLOAD_BYTES + 1)
    key = state.remember_upload(data, image_vector(state, data))
    params = {"image": key, "k": k, **({"video": video} if video else {})}
    return RedirectResponse("/search?" + urlencode(params), status_code=303)


def _int(value: str, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{name}: must be a whole number, got {value[:20]!r}") from None


# -- a segment ---------------------------------------------------------------------------------


@router.get("/segments/{segment_id}")
def segment_page(request: Request, segment_id: str) -> Response:
    """A segment: its sampled frames, the segment playing from its video, its neighbours, and more like it."""
    view = _state(request).view()
    details = api.segment_details(view, view.require_segment(segment_id))
    back = request.query_params.get("back", "")[:4000]
    k = request.query_params.get("k") or str(C.DEFAULT_TOP_K_RESULTS)
    more = "/search?" + urlencode({"like": segment_id, "k": k})
    return render(request, "segment.html.j2", s=details, back=back, more=more, nav="search")


# -- review ------------------------------------------------------------------------------------


@router.get("/review")
def review_page(request: Request) -> Response:
    """Prompts, rule, calibration and thresholds; the page rescores through ``/api/review``."""
    q = request.query_params
    state = _state(request)
    return render(
        request, "review.html.j2", nav="review", controls=option_controls(q), prompt_sets=builtin_prompt_sets(),
        prompts=q.get("prompts", "")[: C.SERVE_MAX_PROMPTS_TEXT], normal_prompts=q.get("normal_prompts", "")[: C.SERVE_MAX_PROMPTS_TEXT],
        annotations=bool(state.annotations), max_prompts=C.SERVE_MAX_PROMPTS_TEXT,
    )  # fmt: skip


@router.get("/videos/{video_id}")
def video_page(request: Request, video_id: str) -> Response:
    """A video: its score timeline under the review's settings (from the URL), thumbnails along it, the player."""
    view = _state(request).view()
    row = view.require_video(video_id)
    details = api.video_details(view, row)
    rows = view.video_rows(row)
    picks = sorted({int(round(i)) for i in _spread(len(rows), VIDEO_THUMBNAILS)})
    segs = view.snap.segment_arrays()
    thumbs = [
        {"segment_id": view.segment_id(row, int(segs.segment[rows[i]])), "start": float(segs.start[rows[i]]),
         "end": float(segs.end[rows[i]])}
        for i in picks
    ]  # fmt: skip
    review_query = urlencode([(k, v) for k, v in request.query_params.multi_items()])
    return render(request, "video.html.j2", v=details, thumbs=thumbs, review_query=review_query,
                  scored=bool(request.query_params.get("prompts")), annotations=bool(_state(request).annotations),
                  nav="review")  # fmt: skip


def _spread(n: int, count: int) -> list[float]:
    if n <= count:
        return [float(i) for i in range(n)]
    return [i * (n - 1) / (count - 1) for i in range(count)]


# -- the index ---------------------------------------------------------------------------------


@router.get("/index")
def index_page(request: Request) -> Response:
    """``vadindex info`` as a page, with the last build's failures."""
    state = _state(request)
    info = index_info(state.view().snap)
    return render(request, "index.html.j2", info=info, failures=_failures(state.path), nav="index")


def _failures(path: Path) -> list[dict[str, str]]:
    """The first rows of the index's ``failures.csv`` (empty when there is none)."""
    try:
        with open(path / FAILURES, encoding="utf-8", newline="") as fh:
            rows = []
            for i, row in enumerate(csv.DictReader(fh)):
                if i >= FAILURES_SHOWN:
                    break
                rows.append({k or "": v or "" for k, v in row.items()})
            return rows
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
