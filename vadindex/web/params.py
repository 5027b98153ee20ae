"""The detect options as request parameters, generated from :class:`~vadindex.detect.options.DetectOptions`.

``/api/detect`` and ``/api/review`` take the same names as ``vadindex detect``'s flags
(``segment_threshold``, ``rule``...), with the field's help as their documentation and its choices
as the allowed values; the review page builds its controls from the same fields
(:func:`option_controls`). Nothing is retyped: a new detect option appears everywhere by itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from vadindex import config as C
from vadindex.detect.options import DetectOptions
from vadindex.options import field_type

PROMPTS_HELP = (
    "Anomaly prompts: a built-in set (ucf-crime, xd-violence, general) or prompts separated by ';' "
    "or new lines (never a file: a server takes no paths)."
)
NORMAL_HELP = (
    "Normal prompts, separated by ';' or new lines. [default: the set's, or the built-in everyday scenes]"
)
#: Options shown as sliders on the review page: the two thresholds a reviewer moves.
SLIDERS = {"segment_threshold": (0.0, 1.0, 0.01), "video_ratio": (0.01, 1.0, 0.01)}


def detect_params(name: str, **extra: tuple[Any, Any]) -> type[BaseModel]:
    """A pydantic model of query parameters: ``prompts``, ``normal_prompts``, every DetectOptions
    field (optional, ``None`` = the default) and ``extra`` fields; unknown parameters are refused."""
    fields: dict[str, Any] = {
        "prompts": (str, Field(..., min_length=1, max_length=C.SERVE_MAX_PROMPTS_TEXT, description=PROMPTS_HELP)),
        "normal_prompts": (
            str | None, Field(None, max_length=C.SERVE_MAX_PROMPTS_TEXT, description=NORMAL_HELP)
        ),
    }  # fmt: skip
    for f in dataclasses.fields(DetectOptions):
        choices = f.metadata.get("choices")
        kind: Any = Literal[choices] if choices else field_type(DetectOptions, f.name)  # type: ignore[valid-type]
        fields[f.name] = (kind | None, Field(None, description=f.metadata.get("help", "")))
    fields.update(extra)
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


def detect_options(params: BaseModel) -> DetectOptions:
    """The :class:`DetectOptions` of validated parameters (absent ones at their defaults)."""
    given = {n: getattr(params, n) for n in DetectOptions.names() if getattr(params, n) is not None}
    return DetectOptions(**given)


def option_controls(values: Mapping[str, str]) -> list[dict[str, Any]]:
    """One control per DetectOptions field for the review page: its name, label, help, kind
    (``select``, ``slider`` or ``number``), choices or bounds, and its value (from ``values``, the
    page's query parameters, else the default)."""
    controls = []
    for f in dataclasses.fields(DetectOptions):
        kind = field_type(DetectOptions, f.name)
        choices = f.metadata.get("choices")
        default = "" if f.default is None else str(f.default)
        if kind is bool:  # a yes/no select: "true"/"false" as the API parses them, never Python's "False"
            default, choices = default.lower(), ("false", "true")
        control: dict[str, Any] = {
            "name": f.name,
            "label": f.name.replace("_", " "),
            "help": f.metadata.get("help", ""),
            "value": str(values.get(f.name, default))[:100].lower()
            if kind is bool
            else str(values.get(f.name, default))[:100],
            "default": default,
        }
        if choices:
            control.update(kind="select", choices=list(choices))
        elif f.name in SLIDERS:
            lo, hi, step = SLIDERS[f.name]
            control.update(kind="slider", min=lo, max=hi, step=step)
        else:
            control.update(kind="number", step=1 if kind is int else 0.01, min=0 if kind is int else None)
        controls.append(control)
    return controls
