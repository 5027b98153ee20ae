"""Search: a text or an example image, encoded by the index's own model, against every segment.

``encoders`` loads the index's model (or its ONNX text tower) and encodes images, ``vectors``
finds the nearest segments to a vector, and ``query`` does both for a text or an image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vadindex._lazy import exports

if TYPE_CHECKING:
    from vadindex.search.encoders import (
        check_encoder,
        encode_query_image,
        load_index_encoder,
        load_text_encoder,
    )
    from vadindex.search.query import query_hits, query_index
    from vadindex.search.vectors import RESULT_COLUMNS, SearchHits, search_hits, search_vector

__all__ = [
    "RESULT_COLUMNS",
    "SearchHits",
    "check_encoder",
    "encode_query_image",
    "load_index_encoder",
    "load_text_encoder",
    "query_hits",
    "query_index",
    "search_hits",
    "search_vector",
]
__getattr__ = exports(
    __name__,
    {
        "RESULT_COLUMNS": "vectors",
        "SearchHits": "vectors",
        "search_hits": "vectors",
        "search_vector": "vectors",
        "check_encoder": "encoders",
        "encode_query_image": "encoders",
        "load_index_encoder": "encoders",
        "load_text_encoder": "encoders",
        "query_hits": "query",
        "query_index": "query",
    },
)
