"""The web app of ``vadindex serve``: search and review pages and a JSON API over one index.

``options`` declares the server's options, ``state`` follows the index as builds commit to it,
``search`` and ``review`` turn queries and detections into what pages and the API show,
``security`` guards every request (token, Host, body size, headers), ``api`` and ``pages`` are the
routes, ``app`` puts them together and ``server`` runs them on uvicorn. FastAPI and uvicorn are
the ``web`` extra (``pip install 'vadindex[web]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vadindex._lazy import exports

if TYPE_CHECKING:
    from vadindex.web.app import create_app
    from vadindex.web.options import ServeOptions
    from vadindex.web.server import serve
    from vadindex.web.state import IndexState

__all__ = ["IndexState", "ServeOptions", "create_app", "serve"]
__getattr__ = exports(
    __name__,
    {"create_app": "app", "ServeOptions": "options", "serve": "server", "IndexState": "state"},
)
