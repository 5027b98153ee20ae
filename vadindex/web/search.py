"""Searches for pages and the API: a text, an uploaded image or a stored segment, to rows and event cards.

Rows carry the fields of ``vadindex query --format json`` and the ``segment_id`` the other
endpoints take. On pages, hits of one video that are adjacent in time merge into one event card.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vadindex import config as C
from vadindex.errors import InputError
from vadindex.search.encoders import encode_rgb_image
from vadindex.search.vectors import search_vector
from vadindex.web.state import IndexState, NotFound

#: Formats an uploaded query image may be in (Pillow's names); nothing else is even parsed.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP")
#: Thumbnails in an event card's strip.
EVENT_STRIP = 6


class TooLarge(InputError):
    """An upload over the size or pixel limit (answered with 413)."""


@dataclass(frozen=True)
class Search:
    """A search's results: the rows, and what was searched for."""

    rows: list[dict[str, Any]]
    what: str
    seconds: float
    #: The segment searched from (``like=``), when it was one.
    like: str | None = None
    #: This search loaded the model (its time includes that).
    loaded_model: bool = False


def check_text(text: str | None, what: str = "text") -> str:
    """A query text, stripped; refused when empty or too long."""
    if text is None or not text.strip():
        raise InputError(f"{what}: give a query text")
    if len(text) > C.SERVE_MAX_TEXT:
        raise InputError(f"{what}: at most {C.SERVE_MAX_TEXT:,} characters, got {len(text):,}")
    return text.strip()


def check_k(k: int) -> int:
    """``k`` in ``1 .. SERVE_MAX_K``."""
    if not 1 <= k <= C.SERVE_MAX_K:
        raise InputError(f"k: must be between 1 and {C.SERVE_MAX_K:,}, got {k}")
    return k


def check_video_glob(video: str | None) -> str | None:
    """A ``--video`` glob: empty means none; refused when too long."""
    if video is None or not video.strip():
        return None
    if len(video) > C.SERVE_MAX_TEXT:
        raise InputError(f"video: at most {C.SERVE_MAX_TEXT:,} characters, got {len(video):,}")
    return video.strip()


def rows_of(hits: pd.DataFrame) -> list[dict[str, Any]]:
    """Result rows as ``vadindex query --format json`` prints them, with ``segment_id``."""
    if hits.empty:
        return []
    rows = json.loads(hits.to_json(orient="records", double_precision=6))
    for row in rows:
        row["segment_id"] = f"{row['video_id']}-{int(row['segment'])}"
    return rows


def search_text(state: IndexState, text: str, k: int, video: str | None = None) -> list[dict[str, Any]]:
    """The ``k`` segments most similar to ``text``."""
    text, k, video = check_text(text), check_k(k), check_video_glob(video)
    vector = state.text_vector(text)
    view = state.view()
    return rows_of(search_vector(view.snap, vector, k, video))


def search_like(state: IndexState, segment_id: str, k: int, video: str | None = None) -> list[dict[str, Any]]:
    """The ``k`` segments most similar to a stored segment (its own vector: nothing is encoded),
    the segment itself left out."""
    k, video = check_k(k), check_video_glob(video)
    view = state.view()
    row = view.require_segment(segment_id)
    vector = view.snap.vectors(np.array([row]))[0]
    rows = rows_of(search_vector(view.snap, vector, k + 1, video))
    rows = [r for r in rows if r["segment_id"] != segment_id][:k]
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def search_upload(state: IndexState, key: str, k: int, video: str | None = None) -> list[dict[str, Any]]:
    """The ``k`` segments most similar to an image uploaded earlier (see :meth:`IndexState.remember_upload`)."""
    vector = state.uploads.get(key)
    if vector is None:
        raise NotFound("this uploaded image is no longer held by the server; upload it again")
    return search_by_vector(state, vector, k, video)


def search_by_vector(
    state: IndexState, vector: np.ndarray, k: int, video: str | None = None
) -> list[dict[str, Any]]:
    """The ``k`` segments most similar to a unit vector (an encoded image, say)."""
    k, video = check_k(k), check_video_glob(video)
    view = state.view()
    return rows_of(search_vector(view.snap, vector, k, video))


def image_vector(state: IndexState, data: bytes) -> np.ndarray:
    """The embedding of an uploaded image, decoded within bounds (see :func:`read_image`)."""
    image = read_image(data)
    return state.encode(lambda e: encode_rgb_image(e, image))


def read_image(data: bytes, size_hint: int = 448) -> Any:
    """Decode an uploaded image safely: at most ``SERVE_MAX_UPLOAD_BYTES``, JPEG, PNG or WEBP only,
    and at most ``SERVE_MAX_UPLOAD_PIXELS``, checked from the header before any pixel is decoded.

    Returns:
        An RGB ``PIL.Image``.

    Raises:
        TooLarge: too many bytes or pixels.
        InputError: not an image of an accepted format, or damaged.
    """
    from PIL import Image, UnidentifiedImageError

    if len(data) > C.SERVE_MAX_UPLOAD_BYTES:
        raise TooLarge(f"image: larger than {C.SERVE_MAX_UPLOAD_BYTES // 2**20} MB")
    if not data:
        raise InputError("image: the upload is empty")
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
            w, h = img.size
            if w * h > C.SERVE_MAX_UPLOAD_PIXELS:
                raise TooLarge(f"image: {w}x{h} pixels is more than {C.SERVE_MAX_UPLOAD_PIXELS:,}")
            if img.format == "JPEG":
                img.draft("RGB", (size_hint, size_hint))  # decode at a fraction of the size
            return img.convert("RGB")
    except TooLarge:
        raise
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"image: {exc}") from None
    except UnidentifiedImageError:
        raise InputError(f"image: not a {', '.join(UPLOAD_FORMATS)} image") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged data
        raise InputError(f"image: cannot be decoded ({exc})") from None


def events_of(rows: list[dict[str, Any]], strip: int = EVENT_STRIP) -> list[dict[str, Any]]:
    """Hits merged into events: hits of one video whose segments are adjacent form one event
    (span, best score, its segments in time order), events ordered by their best hit's rank.

    Args:
        rows: search rows (``video_id``, ``segment``, ``start``, ``end``, ``score``, ``rank``).
        strip: segments shown in an event's strip of thumbnails (spread over it).
    """
    by_video: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_video.setdefault(row["video_id"], []).append(row)
    events = []
    for hits in by_video.values():
        hits.sort(key=lambda r: r["segment"])
        run = [hits[0]]
        for row in hits[1:]:
            if row["segment"] == run[-1]["segment"] + 1:
                run.append(row)
            else:
                events.append(_event(run, strip))
                run = [row]
        events.append(_event(run, strip))
    events.sort(key=lambda e: e["rank"])
    return events


def _event(run: list[dict[str, Any]], strip: int) -> dict[str, Any]:
    best = min(run, key=lambda r: r["rank"])
    shown = run if len(run) <= strip else [run[round(i * (len(run) - 1) / (strip - 1))] for i in range(strip)]
    return {
        "video": best["video"],
        "video_id": best["video_id"],
        "start": run[0]["start"],
        "end": run[-1]["end"],
        "score": best["score"],
        "rank": best["rank"],
        "segment_id": best["segment_id"],
        "segments": [r["segment_id"] for r in run],
        "strip": [{"segment_id": r["segment_id"], "start": r["start"]} for r in shown],
    }


def is_missing(value: Any) -> bool:
    """True for ``None``, NaN and pandas' ``NA`` (a missing label or class)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return False
    return value is None or bool(pd.isna(value))


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN or infinity as ``None`` (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
