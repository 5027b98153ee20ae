"""The JSON API: the CLI's commands over HTTP, with the fields of their ``--format json`` output.

Every endpoint takes ids, never paths: a segment is ``<video id>-<segment number>`` and a video its
content id, both as the query rows give them. Bad parameters get a 4xx ``{"detail": "..."}``.
"""

from __future__ import annotations

import io
import logging
import mimetypes
import os
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import Field

from vadindex import config as C
from vadindex.index.info import index_info
from vadindex.web import review
from vadindex.web.params import detect_options, detect_params
from vadindex.web.search import (
    image_vector,
    is_missing,
    jsonable,
    search_by_vector,
    search_like,
    search_text,
)
from vadindex.web.state import IndexState, IndexView, NotFound

log = logging.getLogger("vadindex")

router = APIRouter(prefix="/api", tags=["api"])

#: ``/api/detect``: the detect options, and which segments to list (as ``detect --segments``).
DetectParams = detect_params(
    "DetectParams",
    segments=(
        Literal[C.SEGMENT_LISTINGS],  # type: ignore[valid-type]
        Field("all", description="Segments listed (videos and metrics are always there)."),
    ),
)
#: ``/api/review``: the detect options, and how many of the best-scoring videos to list.
ReviewParams = detect_params(
    "ReviewParams",
    videos=(
        int,
        Field(review.DEFAULT_VIDEOS, ge=1, le=review.MAX_VIDEOS, description="Videos listed, best first."),
    ),
)
#: ``/api/review/videos/{id}``: the detect options alone.
VideoReviewParams = detect_params("VideoReviewParams")

K = Annotated[int, Query(ge=1, le=C.SERVE_MAX_K, description="Number of results.")]
Text = Annotated[str | None, Query(max_length=C.SERVE_MAX_TEXT, description="Query text.")]
Glob = Annotated[
    str | None,
    Query(max_length=C.SERVE_MAX_TEXT, description="Only videos whose name or path matches this glob."),
]


def index_state(request: Request) -> IndexState:
    """The server's :class:`IndexState`."""
    return request.app.state.index


@router.get("/query", summary="Search by text, or by a stored segment (more like this)")
def query(request: Request, text: Text = None, k: K = C.DEFAULT_TOP_K_RESULTS, video: Glob = None,
          like: Annotated[str | None, Query(max_length=100, description="A segment id: search with its stored vector.")] = None) -> Response:  # fmt: skip
    """``vadindex query TEXT -k K --video GLOB --format json``: the rows, each with ``segment_id``."""
    state = index_state(request)
    if like is not None:
        rows = search_like(state, like, k, video)
    else:
        rows = search_text(state, text or "", k, video)
    return JSONResponse(rows)


@router.post("/query", summary="Search by an example image (multipart upload, at most 10 MB)")
def query_image(
    request: Request,
    image: Annotated[
        UploadFile, File(description="A JPEG, PNG or WEBP image, at most 10 MB and 25 megapixels.")
    ],
    k: Annotated[int, Form(ge=1, le=C.SERVE_MAX_K)] = C.DEFAULT_TOP_K_RESULTS,
    video: Annotated[str | None, Form(max_length=C.SERVE_MAX_TEXT)] = None,
) -> Response:
    """``vadindex query --image FILE --format json``."""
    state = index_state(request)
    data = image.file.read(C.SERVE_MAX_UPLOAD_BYTES + 1)
    return JSONResponse(search_by_vector(state, image_vector(state, data), k, video))


@router.get("/detect", summary="A detection, as `vadindex detect --format json` prints it")
def detect(request: Request, params: Annotated[DetectParams, Query()]) -> Response:  # type: ignore[valid-type]
    """Every segment and video scored against the prompts (``segments=anomalous`` or ``none`` lists fewer)."""
    state = index_state(request)
    view = state.view()
    result = review.detection(state, view, review.prompt_spec(params.prompts, params.normal_prompts),
                              detect_options(params))  # fmt: skip
    out = io.StringIO()
    result.write_json(out, segments=params.segments)
    return Response(out.getvalue(), media_type="application/json")


@router.get("/review", summary="What the review page shows: counts, metrics, histogram, best videos")
def review_summary(request: Request, params: Annotated[ReviewParams, Query()]) -> Response:  # type: ignore[valid-type]
    """The detection summarised for the review page (its timelines at most 300 points each)."""
    state = index_state(request)
    view = state.view()
    opts = detect_options(params)
    result = review.detection(state, view, review.prompt_spec(params.prompts, params.normal_prompts), opts)
    return JSONResponse(review.summary(view, result, opts, params.videos))


@router.get("/review/videos/{video_id}", summary="One video's decision and full score timeline")
def review_video(request: Request, video_id: str, params: Annotated[VideoReviewParams, Query()]) -> Response:  # type: ignore[valid-type]
    """A video's score, decision and timeline (up to 2,000 points) under the given prompts and options."""
    state = index_state(request)
    view = state.view()
    view.require_video(video_id)
    result = review.detection(state, view, review.prompt_spec(params.prompts, params.normal_prompts),
                              detect_options(params))  # fmt: skip
    return JSONResponse(review.video_summary(view, result, video_id))


@router.get("/info", summary="The index, as `vadindex info --format json` prints it")
def info(request: Request) -> Response:
    """Manifest, counts, sizes and failures of the last build."""
    return JSONResponse(jsonable(index_info(index_state(request).view().snap)))


@router.get("/segments/{segment_id}", summary="A segment: its video, span, frames and neighbours")
def segment(request: Request, segment_id: str) -> Response:
    """Metadata of one segment, the times of its sampled frames and the ids of its neighbours in time."""
    view = index_state(request).view()
    return JSONResponse(jsonable(segment_details(view, view.require_segment(segment_id))))


@router.head("/segments/{segment_id}/thumbnail", include_in_schema=False)
@router.get("/segments/{segment_id}/thumbnail", summary="A segment's thumbnail (JPEG)")
def thumbnail(request: Request, segment_id: str) -> Response:
    """The segment's middle frame: stored in the index, cached, or decoded from its video; a
    placeholder picture (header ``X-Thumbnail: placeholder``) when the video moved or changed."""
    view = index_state(request).view()
    return _jpeg(view.thumbs.segment(view.require_segment(segment_id)))


@router.head("/segments/{segment_id}/frames/{number}", include_in_schema=False)
@router.get("/segments/{segment_id}/frames/{number}", summary="One sampled frame of a segment (JPEG)")  # fmt: skip
def frame(request: Request, segment_id: str, number: int) -> Response:
    """Sampled frame ``number`` (0-based) of the segment, as the encoder saw it (in time)."""
    view = index_state(request).view()
    row = view.require_segment(segment_id)
    times = frame_times(view, row)
    if not 0 <= number < len(times):
        raise NotFound(f"segment {segment_id} has {len(times)} sampled frames")
    video = int(view.snap.segment_arrays().video[row])
    return _jpeg(view.thumbs.at(str(view.video_ids[video]), times[number]))


@router.get("/videos/{video_id}", summary="A video: name, duration, segments, label")
def video(request: Request, video_id: str) -> Response:
    """A row of the index's video table (without the file's path)."""
    view = index_state(request).view()
    return JSONResponse(jsonable(video_details(view, view.require_video(video_id))))


@router.head("/videos/{video_id}/stream", include_in_schema=False)
@router.get("/videos/{video_id}/stream", summary="The video file (HTTP range requests)")
def stream(request: Request, video_id: str) -> Response:
    """The indexed video itself, for playing and seeking in a page; only files registered in the
    index, and only while the file at its recorded path (or ``--video-root``) is still the video that
    was indexed."""
    view = index_state(request).view()
    row = view.require_video(video_id)
    store = view.thumbs
    problem = store.video_problem(video_id)
    path = store.video_path(video_id)
    if problem or path is None:
        log.warning("video %s: %s", video_id, problem or "not in the index")  # paths stay in the log
        raise NotFound("this video's file is not available (moved, deleted or changed since it was indexed)")
    try:
        stat = os.stat(path)
    except OSError:
        raise NotFound("this video's file is not available") from None
    kind = mimetypes.guess_type(str(view.video_names[row]))[0] or "application/octet-stream"
    return FileResponse(
        path, media_type=kind, stat_result=stat, headers={"Cache-Control": "private, max-age=300"}
    )


def _jpeg(thumb: Any) -> Response:
    cache = "no-store" if thumb.source == "placeholder" else "private, max-age=86400"
    return Response(
        thumb.jpeg, media_type="image/jpeg", headers={"Cache-Control": cache, "X-Thumbnail": thumb.source}
    )


def frame_times(view: IndexView, row: int) -> list[float]:
    """When the segment's sampled frames were taken: every ``1 / fps`` from its start, as many as it holds."""
    segs = view.snap.segment_arrays()
    fps = float(view.manifest.sampling.get("fps", C.DEFAULT_FPS))
    start, end, n = float(segs.start[row]), float(segs.end[row]), int(segs.n_frames[row])
    return [min(start + i / fps, end) for i in range(max(n, 1))]


#: Segments shown each side of a segment on its page.
NEIGHBOURS = 4


def segment_details(view: IndexView, row: int) -> dict[str, Any]:
    """A segment's metadata, frame times and neighbours (ids of the segments around it in its video)."""
    segs = view.snap.segment_arrays()
    video = int(segs.video[row])
    number = int(segs.segment[row])
    first = int(view.first_row[video])
    count = int(view.n_segments[video])
    around = range(max(0, number - NEIGHBOURS), min(count, number + NEIGHBOURS + 1))
    label = int(segs.label[row])
    cls = view.snap.videos["class"].iloc[video]
    return {
        "segment_id": view.segment_id(video, number),
        "video_id": str(view.video_ids[video]),
        "video": str(view.video_names[video]),
        "segment": number,
        "start": float(segs.start[row]),
        "end": float(segs.end[row]),
        "start_frame": int(segs.start_frame[row]),
        "end_frame": int(segs.end_frame[row]),
        "label": None if label < 0 else label,
        "class": None if is_missing(cls) else str(cls),
        "frames": frame_times(view, row),
        "neighbours": [
            {
                "segment_id": view.segment_id(video, n),
                "segment": n,
                "start": float(segs.start[first + n]),
                "end": float(segs.end[first + n]),
            }
            for n in around
        ],  # fmt: skip
    }


def video_details(view: IndexView, row: int) -> dict[str, Any]:
    """A video's row of the index (no path: the server hands out ids, not file locations)."""
    v = view.snap.videos.iloc[row]
    keep = ("video_id", "video", "label", "class", "duration", "n_frames", "width", "height", "codec",
            "n_segments", "warning", "added")  # fmt: skip
    out = {k: None if is_missing(v[k]) else v[k] for k in keep}
    out["label"] = None if out["label"] is None else int(out["label"])
    return out
