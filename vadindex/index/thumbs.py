"""Thumbnails stored in an index (``build --thumbnails``): one small JPEG per segment, a part file each.

``parts/<P>.thumbs.parquet`` holds one row per segment of part ``P``, in row order: ``time`` (the
frame's time in seconds from the video's first frame) and ``jpeg`` (the image, or null where none
was kept). Row groups of :data:`ROW_GROUP` rows let a reader fetch one thumbnail without reading the
whole part. Like every part file it is written atomically before the manifest that names it, and
its size and SHA-256 are recorded there.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vadindex.files import atomic_path

#: Suffix of a part's thumbnail file.
THUMBNAILS = "thumbs.parquet"
#: Rows per Parquet row group: one read fetches at most this many thumbnails (~1 MB).
ROW_GROUP = 256
SCHEMA = pa.schema([("time", pa.float64()), ("jpeg", pa.binary())])
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"


def save_thumbnails(target: Path, times: Sequence[float], jpegs: Sequence[bytes | None]) -> None:
    """Write a part's thumbnails atomically (uncompressed: JPEG does not compress further)."""
    table = pa.table(
        {"time": pa.array(times, pa.float64()), "jpeg": pa.array(jpegs, pa.binary())}, schema=SCHEMA
    )
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP, compression="none")


def read_thumbnails(file: Path, rows: Sequence[int] | None = None) -> dict[int, tuple[float, bytes | None]]:
    """``{row: (time, jpeg)}`` of a part's thumbnail file, for ``rows`` (part-local) or all of them.

    Only the row groups holding the requested rows are read.
    """
    reader = pq.ParquetFile(file)
    out: dict[int, tuple[float, bytes | None]] = {}
    starts = [0]
    for g in range(reader.num_row_groups):
        starts.append(starts[-1] + reader.metadata.row_group(g).num_rows)
    wanted = None if rows is None else sorted(set(int(r) for r in rows))
    for g in range(reader.num_row_groups):
        lo, hi = starts[g], starts[g + 1]
        if wanted is not None and not any(lo <= r < hi for r in wanted):
            continue
        table = reader.read_row_group(g, columns=["time", "jpeg"])
        times = table.column("time").to_pylist()
        blobs = table.column("jpeg").to_pylist()
        for i in range(hi - lo) if wanted is None else (r - lo for r in wanted if lo <= r < hi):
            out[lo + i] = (float(times[i]), blobs[i])
    return out


def looks_like_jpeg(data: bytes | None) -> bool:
    """True for bytes framed as a JPEG (start and end markers); cheap, for integrity checks."""
    return bool(data) and data[:2] == _SOI and data.rstrip(b"\x00")[-2:] == _EOI  # type: ignore[index]


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of a JPEG, fully decoded so a damaged image raises (``OSError``, ``ValueError``)."""
    from PIL import Image  # only checks decode images

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size
