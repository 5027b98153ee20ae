"""Self-contained HTML pages: jinja2 templates shipped in the package, autoescaped, figures inlined.

Every page is one file that opens anywhere, offline: styles are inline, figures and thumbnails are
``data:`` URIs, there is no script, font or image from anywhere else, and the Content-Security-Policy
of each page forbids loading any (``default-src 'none'``), so a mail client or browser that opens it
makes no request. Every value shown goes through jinja2's autoescaping.
"""

from __future__ import annotations

import base64
import math
import os
import time
from pathlib import Path
from typing import Any

import jinja2

from vadindex import __version__
from vadindex.files import write_output

_TEMPLATES = Path(__file__).resolve().parent / "templates"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,  # every template, whatever its name: names and prompts come from users
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = number
    env.filters["pct"] = percent
    env.filters["secs"] = seconds
    return env


def number(value: Any, digits: int = 3) -> str:
    """A metric for display: ``n/a`` for missing or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{float(value):.{digits}f}"


def percent(value: Any) -> str:
    """A rate as a percentage, ``n/a`` when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * float(value):.1f} %"


def seconds(value: Any) -> str:
    """A time or duration: ``12.5 s`` below a minute, then ``m:ss.s``, then ``h:mm:ss``."""
    v = float(value)
    if v < 60:
        return f"{v:.1f} s"
    if v >= 3600:
        return time.strftime("%H:%M:%S", time.gmtime(v))
    return f"{int(v // 60)}:{v % 60:04.1f}"


def png_uri(data: bytes) -> str:
    """PNG bytes as a data URI."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def render(template: str, **context: Any) -> str:
    """Render a template of the package with ``context`` (autoescaped)."""
    context.setdefault("generated", time.strftime("%Y-%m-%d %H:%M:%S %z"))
    context.setdefault("version", __version__)
    return _environment().get_template(template).render(**context)


def write_page(out: str | os.PathLike[str], template: str, **context: Any) -> Path:
    """Render a template and write it to ``out`` atomically (creating its folder); returns the path."""
    return write_output(out, render(template, **context))
