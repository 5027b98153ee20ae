"""Search: a text or an example image, encoded by the index's own model, against every segment.

``encoders`` loads the index's model and encodes images, ``vectors`` finds the nearest segments to
a vector, and ``query`` does both for a text or an image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vadindex._lazy import exports

if TYPE_CHECKING:
    from vadindex.search.encoders import check_encoder, encode_query_image, load_index_encoder
    from vadindex.search.query import query_index
    from vadindex.search.vectors import RESULT_COLUMNS, search_vector

__all__ = [
    "RESULT_COLUMNS",
    "check_encoder",
    "encode_query_image",
    "load_index_encoder",
    "query_index",
    "search_vector",
]
__getattr__ = exports(
    __name__,
    {
        "RESULT_COLUMNS": "vectors",
        "search_vector": "vectors",
        "check_encoder": "encoders",
        "encode_query_image": "encoders",
        "load_index_encoder": "encoders",
        "query_index": "query",
    },
)
