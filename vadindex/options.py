"""Options declared once: each is a field of a frozen dataclass that carries its default, help and
choices, and the CLI, config files and the Python API all read it from there.

A field made with :func:`option` knows everything a command-line flag needs; :mod:`vadindex._cli`
turns the fields of :class:`~vadindex.ingest.options.BuildOptions` and
:class:`~vadindex.detect.options.DetectOptions` into click options, and :meth:`Options.from_mapping`
reads the same names (``segment_threshold`` or ``segment-threshold``) from a YAML file.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from vadindex.errors import InputError

T = TypeVar("T", bound="Options")


def option(
    default: Any, help: str, *, choices: tuple[str, ...] | None = None, metavar: str | None = None
) -> Any:
    """A dataclass field for an option: its default, one line of help, and its choices if any."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar})


def field_type(cls: type, name: str) -> type:
    """The plain type of a field (``float`` for ``float | None``)."""
    hint = typing.get_type_hints(cls)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


class Options:
    """Behaviour shared by option dataclasses (frozen, validated in ``__post_init__``)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def from_mapping(cls: type[T], data: Mapping[str, Any], where: str = "options") -> T:
        """Options from a mapping of names (``_`` or ``-``) to values, converted to each field's type.

        Raises:
            InputError: an unknown name, or a value of the wrong type, with ``where`` in the message.
        """
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in cls.names():
                raise InputError(f"{where}: unknown option {key!r}; known: {', '.join(sorted(cls.names()))}")
            values[name] = convert(value, field_type(cls, name), f"{where}: {key}")
        return cls(**values)

    def replace(self: T, **changes: Any) -> T:
        """A copy with some options changed (``None`` values are ignored); unknown names are refused."""
        unknown = set(changes) - set(self.names())
        if unknown:
            raise InputError(
                f"unknown option {sorted(unknown)[0]!r}; known: {', '.join(sorted(self.names()))}"
            )
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[type-var]

    def to_args(self) -> list[str]:
        """The command-line flags that give every option its value here (``--smooth 2``,
        ``--use-labels`` / ``--no-use-labels``); options that are ``None`` are left out."""
        args: list[str] = []
        for name, value in self.to_dict().items():
            flag = "--" + name.replace("_", "-")
            if value is None:
                continue
            if isinstance(value, bool):
                args.append(flag if value else f"--no-{name.replace('_', '-')}")
            else:
                args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return args

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-ready dict of every option."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def convert(value: Any, kind: type, where: str) -> Any:
    """``value`` as ``kind`` (``None`` stays ``None``); whole numbers must be whole."""
    if value is None:
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{where} must be true or false, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise InputError(f"{where} must be a whole number, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(f"{where} must be a {kind.__name__}, got {value!r}") from None
